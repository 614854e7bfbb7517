"""Helpers for the Ansible checks: run ansible-playbook on localhost against temp inventories.

Nothing here touches a remote host: the preflight play and the template rendering run on
the controller (``-c local``), so the whole suite runs in well under two minutes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "roles"
ROLE_NAMES = (
    "redis_ha",
    "redis",
    "sentinel",
    "redis_exporter",
    "redis_ha_app",
    "drill",
    "backup",
    "monitoring",
    "alertmanager",
)
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"

# Passwords that pass the preflight: >= 16 characters, distinct, no quotes or spaces.
GOOD_PASSWORDS = {
    "redis_admin_password": "admin-Pw-0123456789abcdef",
    "redis_app_password": "app-Pw-0123456789abcdef",
    "redis_replication_password": "repl-Pw-0123456789abcdef",
    "redis_sentinel_password": "sentinel-user-Pw-0123456789",
    "redis_exporter_password": "exporter-Pw-0123456789abc",
    "sentinel_password": "sentinel-Pw-0123456789abcdef",
    "sentinel_peer_password": "sentinel-peer-Pw-0123456789",
    "sentinel_app_password": "sentinel-app-Pw-0123456789",
}


def ansible_bin(name: str) -> str:
    """The ansible tool next to the running Python (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run `make venv`")
    return found


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(ROLES),
            # Role filters (redis_ha_*) are needed when templates render outside a role.
            "ANSIBLE_FILTER_PLUGINS": str(ROLES / "redis_ha" / "filter_plugins"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_LOCAL_TEMP": str(Path(os.environ.get("TMPDIR", "/tmp")) / "redis-ha-kit-ansible-tmp"),
        }
    )
    return env


@dataclass
class PlaybookRun:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_playbook(
    playbook: Path,
    inventory: Path | None = None,
    extra_vars: dict[str, Any] | Path | None = None,
    *args: str,
) -> PlaybookRun:
    """Run ansible-playbook with a local connection and return its combined output."""
    cmd = [ansible_bin("ansible-playbook"), str(playbook), "-c", "local"]
    if inventory is not None:
        cmd += ["-i", str(inventory)]
    if isinstance(extra_vars, Path):
        cmd += ["-e", f"@{extra_vars}"]
    elif extra_vars:
        cmd += ["-e", yaml.safe_dump(extra_vars, default_flow_style=True, width=10_000)]
    cmd += list(args)
    # Never the test runner's stdin: Ansible refuses one a previous run left non-blocking.
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=ansible_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)


def render_templates(playbook: Path, inventory: Path, variables: dict[str, Any], directory: Path) -> dict[str, str]:
    """Run a render playbook that writes ``rendered.json`` into ``directory/out``; return the texts."""
    out = directory / "out"
    out.mkdir()
    result = run_playbook(playbook, inventory, {**variables, "render_dir": str(out)})
    assert result.ok, result.output
    texts: dict[str, str] = json.loads((out / "rendered.json").read_text())
    return texts


def write_inventory(
    directory: Path,
    hosts: dict[str, Any],
    group_vars: dict[str, Any],
    host_vars: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """Write an inventory directory (hosts.yml, group_vars/all.yml, host_vars/<host>.yml) and return its path."""
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": hosts}}))
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    for host, variables in (host_vars or {}).items():
        (directory / "host_vars").mkdir(exist_ok=True)
        (directory / "host_vars" / f"{host}.yml").write_text(yaml.safe_dump(variables))
    return directory


def cluster_hosts(count_redis: int = 3, count_sentinel: int = 3, base: str = "10.1.0.") -> dict[str, Any]:
    """Groups redis and sentinel; node1 is the initial primary; sentinels beyond the Redis nodes get own hosts."""
    redis: dict[str, dict[str, Any]] = {
        f"node{i}": {"ansible_host": f"{base}{10 + i}"} for i in range(1, count_redis + 1)
    }
    if redis:
        redis["node1"]["redis_initial_primary"] = True
    sentinel: dict[str, Any] = {}
    for i in range(1, count_sentinel + 1):
        sentinel[f"node{i}"] = None if f"node{i}" in redis else {"ansible_host": f"{base}{10 + i}"}
    return {"redis": {"hosts": redis}, "sentinel": {"hosts": sentinel}}


def load_plugin(name: str) -> ModuleType:
    """Import one of the redis_ha role's filter plugins as a plain module (they are pure functions)."""
    path = ROLES / "redis_ha" / "filter_plugins" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"redis_ha_filter_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
