"""The client's package metadata: one license everywhere, one version, ranges the compat ends test."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
RANGED = ("redis", "rq", "prometheus-client")


def pins(path: Path) -> dict[str, Version]:
    """``name==version`` lines of a requirements or constraints file, by lower-case name."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            found[match[1].lower()] = Version(match[2])
    return found


def requirements() -> dict[str, Requirement]:
    return {Requirement(r).name: Requirement(r) for r in PYPROJECT["dependencies"]}


def lower_bound(requirement: Requirement) -> Version:
    (bound,) = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    return Version(bound)


def test_the_kit_has_one_license_mit_everywhere() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert "the redis-ha-kit authors" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "client" / "LICENSE").resolve() == (ROOT / "LICENSE").resolve()
    assert PYPROJECT["license"] == "MIT"
    assert PYPROJECT["license-files"] == ["LICENSE"]
    assert not [c for c in PYPROJECT["classifiers"] if c.startswith("License ::")]  # PEP 639: the expression only
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "main.yml").exists())
    licenses = {role: yaml.safe_load((ROOT / "roles" / role / "meta" / "main.yml").read_text()) for role in roles}
    assert {role: meta["galaxy_info"]["license"] for role, meta in licenses.items()} == dict.fromkeys(roles, "MIT")


def test_redis_and_rq_are_ranges_not_pins() -> None:
    for name in RANGED:
        specs = {spec.operator for spec in requirements()[name].specifier}
        assert specs == {">=", "<"}, f"{name} should be declared as >=OLDEST,<NEXT_MAJOR"


def test_the_oldest_compat_end_pins_exactly_the_lower_bounds() -> None:
    oldest = pins(ROOT / "tests" / "compat" / "oldest.txt")
    assert oldest == {name: lower_bound(requirements()[name]) for name in RANGED}


def test_the_newest_compat_end_and_the_pinned_toolchain_lie_within_the_ranges() -> None:
    newest = pins(ROOT / "tests" / "compat" / "newest.txt")
    pinned = pins(ROOT / "requirements.txt")
    for name in RANGED:
        assert newest[name] in requirements()[name].specifier, f"tests/compat/newest.txt: {name} {newest[name]}"
        assert pinned[name] in requirements()[name].specifier, f"requirements.txt: {name} {pinned[name]}"


def test_the_version_is_read_from_pyproject_by_the_app_role_and_has_a_changelog_entry() -> None:
    version = PYPROJECT["version"]
    role_vars = (ROOT / "roles" / "redis_ha_app" / "vars" / "main.yml").read_text()
    assert "regex_search('(?m)^version\\s*=\\s*\"([^\"]+)\"', '\\1')" in role_vars
    (found,) = re.findall(r'(?m)^version\s*=\s*"([^"]+)"', (ROOT / "client" / "pyproject.toml").read_text())
    assert found == version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
