"""Assembles the Ansible collection redis_ha_kit.redis_ha from the repository's layout, then builds it.

The repository keeps the layout its own ``make deploy`` and Molecule use (``roles/``, playbooks in
``ansible/``, shared templates in ``templates/``, each role's filters in ``roles/<role>/filter_plugins``).
A collection wants another one, so this copies rather than moves, into a staging directory:

- every role with a ``tasks/main.yml``, without its ``filter_plugins/``, to ``roles/``;
- every role's filter plugin files to ``plugins/filter/``, where a collection's roles find them,
  but only by their full name: every ``| <filter>`` in the copied roles and playbooks becomes
  ``| redis_ha_kit.redis_ha.<filter>``, the one rewrite the move needs;
- ``ansible/*.yml`` to ``playbooks/`` (``ansible-playbook redis_ha_kit.redis_ha.site``);
- what the roles reach outside themselves, at the same place relative to them: ``templates/``, the
  client's source and ``requirements.txt`` (the app role builds its wheelhouse from them);
- ``collection/galaxy.yml`` with the kit's version (from ``client/pyproject.toml``, its one place).

New roles, filter plugin files and playbooks are picked up without editing this file.

    python collection/build.py [--output-path dist/collection] [--keep-staging DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "redis_ha_kit"
NAME = "redis_ha"
FQCN = f"{NAMESPACE}.{NAME}"
DEFAULT_OUTPUT = ROOT / "dist" / "collection"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
# Role plugin directories this build knows how to move; any other one stops the build.
ROLE_FILTERS = "filter_plugins"
UNSUPPORTED_IN_ROLES = ("library", "module_utils", "lookup_plugins", "test_plugins", "action_plugins")
REWRITTEN_SUFFIXES = {".yml", ".yaml", ".j2"}
# Reached by roles as {{ role_path }}/../../<path> (see roles/*/defaults/main.yml).
# Then, for the collection's users: the license, the kit's changelog, the inventory explained.
SHARED = (
    *("templates", "client", "requirements.txt"),
    *("LICENSE", "CHANGELOG.md", "inventory.example"),
)


class BuildError(Exception):
    """The repository holds something the collection cannot carry as it is; says what to change."""


def version() -> str:
    return str(tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]["version"])


def roles() -> list[Path]:
    return sorted(path for path in (ROOT / "roles").iterdir() if (path / "tasks" / "main.yml").is_file())


def filter_names(plugin: Path) -> list[str]:
    """The filter names a plugin file declares, read from its FilterModule as Ansible would."""
    spec = importlib.util.spec_from_file_location(f"_collection_filter_{plugin.stem}", plugin)
    if spec is None or spec.loader is None:
        raise BuildError(f"{plugin}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sorted(module.FilterModule().filters())


def qualify(text: str, filters: Iterable[str]) -> str:
    """``| name`` and ``map('name'`` (and select/reject) become their full collection name."""
    names = "|".join(re.escape(name) for name in sorted(filters, key=len, reverse=True))
    text = re.sub(rf"(\|\s*)({names})\b", rf"\g<1>{FQCN}.\g<2>", text)
    return re.sub(rf"(\b(?:map|select|reject)\(\s*['\"])({names})(['\"])", rf"\g<1>{FQCN}.\g<2>\g<3>", text)


def qualify_tree(directory: Path, filters: Iterable[str]) -> None:
    names = list(filters)
    for path in directory.rglob("*"):
        if path.is_file() and path.suffix in REWRITTEN_SUFFIXES:
            text = path.read_text()
            rewritten = qualify(text, names)
            if rewritten != text:
                path.write_text(rewritten)


def assemble(staging: Path) -> None:
    """Lays the collection out in ``staging`` (an empty directory)."""
    plugins = staging / "plugins" / "filter"
    plugins.mkdir(parents=True)
    filters: dict[str, Path] = {}
    for role in roles():
        for unsupported in UNSUPPORTED_IN_ROLES:
            if (role / unsupported).exists():
                raise BuildError(
                    f"{role / unsupported}: a collection's roles cannot carry plugins; collection/build.py moves "
                    f"only {ROLE_FILTERS}/ to plugins/filter/, so teach it where {unsupported}/ goes"
                )
        for plugin in sorted((role / ROLE_FILTERS).glob("*.py")):
            if (plugins / plugin.name).exists():
                raise BuildError(f"{plugin}: another role has a filter plugin file named {plugin.name}; rename one")
            for name in filter_names(plugin):
                if name in filters:
                    raise BuildError(f"filter {name} is defined in both {filters[name]} and {plugin}; rename one")
                filters[name] = plugin
            shutil.copy2(plugin, plugins / plugin.name)
        shutil.copytree(role, staging / "roles" / role.name, ignore=shutil.ignore_patterns(ROLE_FILTERS, "*.pyc"))
    shutil.copytree(ROOT / "ansible", staging / "playbooks", ignore=lambda d, names: _not_playbooks(Path(d), names))
    for shared in SHARED:
        source, target = ROOT / shared, staging / shared
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORED)
        else:
            shutil.copy2(source, target)
    qualify_tree(staging / "roles", filters)
    qualify_tree(staging / "playbooks", filters)
    shutil.copytree(ROOT / "collection" / "meta", staging / "meta")
    shutil.copy2(ROOT / "collection" / "README.md", staging / "README.md")
    galaxy = (ROOT / "collection" / "galaxy.yml").read_text()
    (staging / "galaxy.yml").write_text(f"{galaxy}version: {version()}\n")


def _not_playbooks(directory: Path, names: list[str]) -> list[str]:
    """Only ansible/*.yml: no inventories, no roles symlink, no ansible.cfg."""
    if directory != ROOT / "ansible":
        return names
    return [name for name in names if not name.endswith(".yml")]


def build(output: Path, staging: Path) -> Path:
    assemble(staging)
    output.mkdir(parents=True, exist_ok=True)
    tarball = output / f"{NAMESPACE}-{NAME}-{version()}.tar.gz"
    tarball.unlink(missing_ok=True)
    galaxy = Path(sys.executable).with_name("ansible-galaxy")
    subprocess.run(
        [str(galaxy), "collection", "build", "--output-path", str(output), str(staging)],
        check=True,
    )
    return tarball


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-path", type=Path, default=DEFAULT_OUTPUT, help="where the tarball goes")
    parser.add_argument("--keep-staging", type=Path, help="assemble here (must not exist) and keep it")
    args = parser.parse_args()
    try:
        if args.keep_staging:
            print(build(args.output_path.resolve(), args.keep_staging.resolve()))
        else:
            with tempfile.TemporaryDirectory() as scratch:
                print(build(args.output_path.resolve(), Path(scratch) / f"{NAMESPACE}-{NAME}"))
    except BuildError as error:
        print(f"collection/build.py: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
