"""Whether a node can replicate from the master: the RDB version the master writes against the
highest one the node's server loads.

A replica's first sync is a full copy in the master's RDB format. A server that cannot load that
version fails every sync and stays empty, and a failover to it loses the data. That is the trap
of moving a cluster across releases and flavors (Valkey 8 refuses the RDB 12 of Redis 7.4+,
valkey-io/valkey#845; Redis 7.0 refuses the RDB 11 of Valkey and Redis 7.2+).

The table of RDB versions is the backup script's (roles/backup/files/redis_ha_backup.py), the
one place the kit keeps it: a restore asks the same question of a backup.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any

# roles/redis_ha/filter_plugins/ in the repository; plugins/filter/ in the collection
# (collection/build.py), whose roles/ is one level up.
_HERE = Path(__file__).resolve().parent
_SCRIPT = next(
    path
    for path in (
        _HERE.parents[1] / "backup" / "files" / "redis_ha_backup.py",
        _HERE.parents[1] / "roles" / "backup" / "files" / "redis_ha_backup.py",
    )
    if path.is_file()
)
_spec = importlib.util.spec_from_file_location("redis_ha_backup", _SCRIPT)
assert _spec is not None and _spec.loader is not None
_backup = sys.modules.get(_spec.name)
if _backup is None:
    _backup = importlib.util.module_from_spec(_spec)
    sys.modules[_spec.name] = _backup  # dataclasses look their module up there
    _spec.loader.exec_module(_backup)


def server_of_info(info: str) -> dict[str, str]:
    """The server (flavor and version) answering with this ``INFO server`` reply. Valkey reports the
    Redis version it is compatible with as ``redis_version`` and its own as ``valkey_version``."""
    fields = _backup.parse_info(info)
    if fields.get("server_name") == "valkey" or "valkey_version" in fields:
        return {"flavor": "valkey", "version": fields.get("valkey_version", "")}
    return {"flavor": "redis", "version": fields.get("redis_version", "")}


def package_version(policy: str, package_state: str = "present") -> str:
    """The server version a node runs after this deploy, from ``apt-cache policy <package>``: the
    installed one, else (not installed, or ``latest``) the candidate; '' when apt knows neither.
    The Debian epoch and revision are dropped (``5:7.0.15-1~deb12u1`` -> ``7.0.15``)."""
    found = dict(re.findall(r"^\s*(Installed|Candidate):\s*(\S+)", policy, re.MULTILINE))
    installed, candidate = found.get("Installed", "(none)"), found.get("Candidate", "(none)")
    chosen = candidate if installed == "(none)" or package_state == "latest" else installed
    match = re.match(r"\d+(\.\d+)*", re.sub(r"^\d+:", "", chosen))
    return match.group(0) if match else ""


def replication_refusal(node_server: dict[str, str], node: str, master_server: dict[str, str], master: str) -> str:
    """Why ``node`` (running ``node_server``) cannot be a replica of ``master`` (running
    ``master_server``); '' when it can, or when the kit does not know one of the two releases."""
    flavor, version = node_server.get("flavor", ""), node_server.get("version", "")
    master_flavor, master_version = master_server.get("flavor", ""), master_server.get("version", "")
    writes = _backup.max_rdb_version(master_flavor, master_version) if master_version else None
    loads = _backup.max_rdb_version(flavor, version) if version else None
    if writes is None or loads is None or loads >= writes:
        return ""
    why = (
        f"{node} would run {flavor} {version}, which loads RDB version {loads} at most, and the master {master} "
        f"runs {master_flavor} {master_version}, which writes RDB version {writes}. Its first sync would fail and "
        "leave it empty, and a failover to it would lose the data."
    )
    if flavor == "valkey":
        why += " (Valkey does not read the RDB 12 of Redis 7.4 and later: valkey-io/valkey#845.)"
    return (
        f"refusing to add {node} as a replica: {why} Replication only carries data to a server that loads "
        f"the master's RDB version: give {node} a flavor and release that does (redis_ha_flavor, the Debian "
        "release), or move in steps that do (README, Moving the cluster to new hosts)."
    )


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_server_of_info": server_of_info,
            "redis_ha_server_package_version": package_version,
            "redis_ha_replication_refusal": replication_refusal,
        }
