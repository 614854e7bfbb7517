"""The Ansible collection redis_ha_kit.redis_ha, built and installed as a user would, used from outside the repository.

`make collection` (collection/build.py) assembles the collection from roles/, ansible/*.yml and templates/;
these tests build it, install the tarball into a temporary directory with ``ansible-galaxy collection install
-p`` and run its preflight from a project directory outside the repository, with no access to the
repository's roles, filter plugins or ansible.cfg: only ANSIBLE_COLLECTIONS_PATH points at the install.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.conftest import GOOD_PASSWORDS, ansible_bin

ROOT = Path(__file__).resolve().parents[1]
FQCN = "redis_ha_kit.redis_ha"
ROLES = ("redis", "sentinel", "redis_exporter", "monitoring", "redis_ha_app", "redis_ha")
# A playbook of the user's own project: the collection's roles by their full names, and one of its playbooks.
OUTSIDE_PLAYBOOK = [
    {"name": "Run the collection's preflight", "ansible.builtin.import_playbook": f"{FQCN}.preflight"},
    {
        "name": "Use the roles from a play of the user's own",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Validate the inventory through the role",
                "ansible.builtin.include_role": {"name": f"{FQCN}.redis_ha", "tasks_from": "validate_inventory.yml"},
            },
            {
                "name": "Write the app's .env and the scrape config from the collection's templates",
                "ansible.builtin.include_role": {"name": f"{FQCN}.redis_ha", "tasks_from": "outputs.yml"},
            },
        ],
    },
]


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("collection-dist")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "collection" / "build.py"), "--output-path", str(output)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    (built,) = output.glob("redis_ha_kit-redis_ha-*.tar.gz")
    return built


def outside_env(home: Path, collections: Path) -> dict[str, str]:
    """Only what a user's shell has: no ANSIBLE_* of the repository's test setup, a HOME of its own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ANSIBLE_", "MOLECULE_"))}
    env.update(
        {
            "HOME": str(home),
            "ANSIBLE_COLLECTIONS_PATH": str(collections),
            "ANSIBLE_ROLES_PATH": str(home / "no-roles"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        }
    )
    return env


@pytest.fixture(scope="module")
def installed(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The collection installed into a fresh directory, and a project directory outside the repository."""
    project = tmp_path_factory.mktemp("outside-project")
    assert ROOT not in project.parents
    collections = project / "collections"
    env = outside_env(project, collections)
    proc = subprocess.run(
        [ansible_bin("ansible-galaxy"), "collection", "install", "--offline", "-p", str(collections), str(tarball)],
        capture_output=True,
        text=True,
        env=env,
        cwd=project,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (project / "site.yml").write_text(yaml.safe_dump(OUTSIDE_PLAYBOOK, sort_keys=False))
    yield project, env


def example_inventory(directory: Path, **changes: Any) -> Path:
    """inventory.example with dummy secrets in place of the vault references, the controller outputs in the
    inventory directory (not beside the collection's playbooks, in the installed collection), plus ``changes``."""
    inventory = yaml.safe_load((ROOT / "inventory.example").read_text())
    group_vars = copy.deepcopy(inventory["all"].pop("vars"))
    group_vars.update(GOOD_PASSWORDS)
    group_vars["redis_ha_deploy_dir"] = str(directory / ".deploy" / directory.name)
    group_vars.update(changes)
    (directory / "group_vars" / "all").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (directory / "group_vars" / "all" / "main.yml").write_text(yaml.safe_dump(group_vars))
    return directory


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ansible_bin("ansible-playbook"), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


def test_the_tarball_holds_the_roles_filters_and_playbooks_with_the_kits_version(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = set(archive.getnames())
    assert {f"roles/{role}/tasks/main.yml" for role in ROLES} <= names
    assert {f"plugins/filter/{plugin.name}" for plugin in (ROOT / "roles").glob("*/filter_plugins/*.py")} <= names
    assert {f"playbooks/{playbook.name}" for playbook in (ROOT / "ansible").glob("*.yml")} <= names
    assert not [name for name in names if "filter_plugins" in name or "__pycache__" in name]
    # The app role builds the client's wheel from the collection's copy (LICENSE is a symlink in the repository).
    client = {f"client/{path.relative_to(ROOT / 'client')}" for path in (ROOT / "client").rglob("*")}
    assert {name for name in client if "__pycache__" not in name and ".egg-info" not in name} <= names
    version = tarball.name.removeprefix("redis_ha_kit-redis_ha-").removesuffix(".tar.gz")
    assert f'version = "{version}"' in (ROOT / "client" / "pyproject.toml").read_text()


def test_the_collection_preflight_accepts_the_example_inventory_from_outside_the_repository(
    installed: tuple[Path, dict[str, str]],
) -> None:
    project, env = installed
    inventory = example_inventory(project / "good")
    proc = run(env, project, "-i", str(inventory), f"{FQCN}.preflight")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Inventory OK: 3 Redis node(s), 3 Sentinel(s), initial primary redis-1." in proc.stdout
    # The user's own playbook: the collection's playbook imported, its role included by full name.
    proc = run(env, project, "-i", str(inventory), "site.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Inventory OK: 3 Redis node(s)") == 2, proc.stdout
    assert "REDIS_SENTINELS=10.0.0.11:26379,10.0.0.12:26379,10.0.0.13:26379" in proc.stdout
    assert "# Environment: good." in (inventory / ".deploy" / "good" / "redis-ha.env").read_text()
    assert "job_name" in (inventory / ".deploy" / "good" / "prometheus-scrape.yml").read_text()


def test_every_collection_playbook_loads_by_its_full_name_from_outside_the_repository(
    installed: tuple[Path, dict[str, str]],
) -> None:
    project, env = installed
    inventory = example_inventory(project / "syntax")
    playbooks = [f"{FQCN}.{playbook.stem}" for playbook in sorted((ROOT / "ansible").glob("*.yml"))]
    proc = run(env, project, "-i", str(inventory), "--syntax-check", *playbooks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ERROR" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_the_collection_preflight_refuses_a_broken_inventory_saying_what_to_fix(
    installed: tuple[Path, dict[str, str]],
) -> None:
    project, env = installed
    inventory = example_inventory(project / "broken", sentinel_quorum=5, redis_app_password="CHANGE_ME")
    (inventory / "group_vars" / "all" / "main.yml").write_text(
        (inventory / "group_vars" / "all" / "main.yml")
        .read_text()
        .replace("redis_ha_deploy_dir:", "unused_deploy_dir:")
    )
    proc = run(env | {"ANSIBLE_SHOW_TASK_PATH_ON_FAILURE": "true"}, project, "-i", str(inventory), f"{FQCN}.preflight")
    assert proc.returncode != 0, proc.stdout
    role = project / "collections" / "ansible_collections" / "redis_ha_kit" / "redis_ha" / "roles" / "redis_ha"
    assert f"task path: {role}/tasks/validate_inventory.yml" in proc.stdout, proc.stdout
    assert "The inventory needs 3 fix(es) before anything is deployed" in proc.stdout, proc.stdout
    assert "sentinel_quorum is 5 with 3 Sentinel(s)" in proc.stdout
    assert "redis_app_password still holds a placeholder" in proc.stdout
    assert f"redis_ha_deploy_dir is {role.parents[1]}/.deploy/broken, inside an installed Ansible collection" in (
        proc.stdout
    )
    assert "CHANGE_ME" not in proc.stdout + proc.stderr  # a secret, even a placeholder, is never printed


def test_every_filter_plugin_of_the_installed_collection_loads_and_works_there(
    installed: tuple[Path, dict[str, str]],
) -> None:
    project, _ = installed
    installed_at = project / "collections" / "ansible_collections" / Path(*FQCN.split("."))
    plugins = sorted((installed_at / "plugins" / "filter").glob("*.py"))
    assert plugins
    filters: dict[str, Any] = {}
    for plugin in plugins:
        spec = importlib.util.spec_from_file_location(f"installed_collection_{plugin.stem}", plugin)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        filters |= module.FilterModule().filters()
    # The backup filter reaches the role's script, which sits elsewhere in a collection than in the repository.
    record = {"rdb_version": 12, "flavor": "redis", "server_version": "7.4.2"}
    assert "valkey-io/valkey#845" in filters["backup_load_refusal"](record, "valkey", "Valkey server v=8.0.2 sha=0")
    # So does the replication check, which reads the same table of RDB versions.
    new, master = {"flavor": "valkey", "version": "8.1.1"}, {"flavor": "redis", "version": "8.0.2"}
    assert "valkey-io/valkey#845" in filters["redis_ha_replication_refusal"](new, "new1", master, "old1")
