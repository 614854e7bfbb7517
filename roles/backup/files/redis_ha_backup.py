#!/usr/bin/python3
"""redis-ha-backup: RDB snapshots of a redis-ha-kit cluster, taken from a replica, checksummed, kept N.

Installed by the backup role on every Redis node (``take``, run by redis-ha-backup.timer and by
``make backup``) and on the backup host (``receive``, the forced command of the nodes' SSH key).
The controller runs it from the repository for ``prune``, ``latest`` and ``verify`` (make backup,
make restore). Python 3 standard library only.

    redis-ha-backup take --config /etc/redis-ha-backup/config.json
    redis-ha-backup receive DIR --keep N --max-age-days D      (name in SSH_ORIGINAL_COMMAND)
    redis-ha-backup prune DIR --keep N --max-age-days D
    redis-ha-backup latest DIR
    redis-ha-backup summary DIR --stale-after-h H               (make status)
    redis-ha-backup verify FILE

A backup is three files: NAME.rdb, NAME.rdb.sha256 (``sha256sum`` format) and NAME.json (the
record: time, source node, server flavor and version, RDB version, size, checksum). The record is
written last, so a backup without one is incomplete and ignored.

Which node takes it (``choose_source``) is decided by every node alike from what Redis says
(INFO replication of the master): the connected, in-sync replica with the lowest address; the
master only when ``allow_master`` is set and no replica qualifies. Decisions are pure functions
that return a reason sentence; only ``main`` and the ``_redis``/``_ssh`` helpers do I/O.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RDB_MAGIC = b"REDIS"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
SUFFIXES = (".rdb", ".rdb.sha256", ".json")
CLI_TIMEOUT_S = 10
RDB_TIMEOUT_S = 3600
SSH_TIMEOUT_S = 3600

# Highest RDB version each server release writes and loads (RDB_VERSION in its rdb.h). Valkey
# 7.2/8.x stay at 11 and refuse the 12 that Redis 7.4+ writes (valkey-io/valkey#845).
REDIS_MAX_RDB = ((7, 4), 12), ((7, 2), 11), ((7, 0), 10), ((5, 0), 9)
VALKEY_MAX_RDB = ((7, 2), 11),
VALKEY_KNOWN_UNTIL = (8, 99)


# Pure decisions.


def parse_info(text: str) -> dict[str, str]:
    """``key:value`` lines of an INFO reply."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def replicas_of(master_info: dict[str, str]) -> list[dict[str, str]]:
    """The ``slaveN:ip=...,port=...,state=...,offset=...,lag=...`` entries of a master's INFO replication."""
    found = []
    for key, value in master_info.items():
        if re.fullmatch(r"slave\d+", key):
            found.append(dict(item.split("=", 1) for item in value.split(",") if "=" in item))
    return found


def _endpoint_key(endpoint: str) -> tuple[int, Any, int]:
    host, _, port = endpoint.rpartition(":")
    try:
        return 0, ipaddress.ip_address(host), int(port)
    except ValueError:
        return 1, host, int(port or 0)


def choose_source(me: str, my_info: dict[str, str], master_info: dict[str, str] | None, *,
                  allow_master: bool, max_lag_s: int) -> tuple[bool, str]:  # fmt: skip
    """Whether the node at ``me`` (``address:port``) takes the backup, and why.

    ``my_info``: this node's INFO replication; ``master_info``: the master's (the same dict when
    this node is the master; None when the master did not answer).
    """
    role = my_info.get("role")
    if master_info is None:
        return False, f"this node is {role} and its master ({my_info.get('master_host', '?')}) does not answer"
    eligible = sorted(
        (f"{r['ip']}:{r['port']}" for r in replicas_of(master_info)
         if r.get("state") == "online" and int(r.get("lag", "999999")) <= max_lag_s),
        key=_endpoint_key,
    )  # fmt: skip
    if role == "master":
        if eligible:
            return False, f"this node is the master; replica {eligible[0]} is in sync and takes the backup"
        if allow_master:
            return True, "no replica is in sync, and backup_allow_master lets the master take the backup"
        return False, (
            "no replica is in sync, so no backup is taken: the kit takes them from a replica, never from the "
            "master (its fork stalls writes); set backup_allow_master: true to allow it"
        )
    if my_info.get("master_link_status") != "up" or my_info.get("master_sync_in_progress", "0") != "0":
        return False, f"this replica is not in sync (link {my_info.get('master_link_status', '?')})"
    if not eligible:
        return False, f"the master lists no replica in sync within {max_lag_s} s"
    if eligible[0] != me:
        return False, f"replica {eligible[0]} is in sync and has the lowest address; it takes the backup"
    return True, f"this replica is in sync with {my_info.get('master_host')} and has the lowest address of those"


def rdb_version(head: bytes) -> int:
    """The RDB format version in a file's first 9 bytes (``REDIS0011`` -> 11); ValueError otherwise."""
    if len(head) < 9 or not head.startswith(RDB_MAGIC) or not head[5:9].isdigit():
        raise ValueError("not an RDB file (it does not start with REDIS and a 4-digit version)")
    return int(head[5:9])


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def max_rdb_version(flavor: str, version: str) -> int | None:
    """Highest RDB version ``flavor`` ``version`` loads, None when the kit does not know that release."""
    release = _version_tuple(version)[:2]
    if flavor == "valkey" and release > VALKEY_KNOWN_UNTIL:
        return None
    for since, rdb in REDIS_MAX_RDB if flavor == "redis" else VALKEY_MAX_RDB:
        if release >= since:
            return rdb
    return None


def load_refusal(rdb: int, record: dict[str, Any], flavor: str, version: str) -> str | None:
    """Why a target server of ``flavor`` ``version`` cannot load a backup of RDB version ``rdb``, or None."""
    limit = max_rdb_version(flavor, version)
    if limit is None or rdb <= limit:
        return None
    written_by = f"{record.get('flavor', '?')} {record.get('server_version', '?')}"
    why = (
        f"the backup is RDB version {rdb} (written by {written_by}); {flavor} {version} loads RDB version "
        f"{limit} at most"
    )
    if flavor == "valkey":
        why += " (Valkey does not read the RDB 12 of Redis 7.4 and later: valkey-io/valkey#845)"
    return (
        f"refusing to restore: {why}. Restore it onto {record.get('flavor', 'the same flavor')} "
        f"{record.get('server_version', '')} or newer (redis_ha_flavor and the package of the backup's server), "
        "then move to the other server through replication only if that direction is supported, or export the "
        "keys (e.g. with DUMP/RESTORE from a running server) instead."
    )


@dataclass(frozen=True)
class Backup:
    name: str
    at: dt.datetime


def backups_in(directory: Path) -> list[Backup]:
    """Complete backups (a record and its RDB) in ``directory``, oldest first."""
    found = []
    for record in directory.glob("*.json"):
        name = record.name[: -len(".json")]
        if not (directory / f"{name}.rdb").is_file():
            continue
        try:
            at = dt.datetime.fromisoformat(json.loads(record.read_text())["time"])
        except (ValueError, KeyError, OSError):
            continue
        found.append(Backup(name, at))
    return sorted(found, key=lambda b: (b.at, b.name))


def to_prune(backups: list[Backup], keep: int, max_age_days: float, now: dt.datetime) -> list[Backup]:
    """Backups beyond the ``keep`` newest or older than ``max_age_days``; never the newest one."""
    if not backups:
        return []
    newest_first = sorted(backups, key=lambda b: (b.at, b.name), reverse=True)
    cutoff = now - dt.timedelta(days=max_age_days)
    return [b for i, b in enumerate(newest_first) if i > 0 and (i >= keep or b.at < cutoff)]


def summarize(directory: str, backups: list[Backup], newest_record: dict[str, Any], now: dt.datetime,
              stale_after_h: float) -> dict[str, Any]:  # fmt: skip
    """What ``make status`` says about a backup directory: how many, the newest one's age and
    source, and a verdict sentence (no backup, too old, or fine)."""
    if not backups:
        return {"dir": directory, "count": 0, "ok": False, "says": f"no complete backup in {directory}"}
    newest = backups[-1]
    age_h = (now - newest.at).total_seconds() / 3600
    source = f"{newest_record.get('source_node', '?')} ({newest_record.get('source_role', '?')})"
    says = (
        f"{len(backups)} backup(s) in {directory}; newest {newest.name}, {age_h:.1f} h old, from {source}, "
        f"{newest_record.get('keys', '?')} keys, {newest_record.get('size', '?')} bytes"
    )
    stale = age_h > stale_after_h
    if stale:
        says += f": OLDER THAN {stale_after_h:g} h, check redis-ha-backup.timer's journal on the Redis nodes"
    return {"dir": directory, "count": len(backups), "newest": newest.name, "age_h": round(age_h, 2), "ok": not stale,
            "says": says}  # fmt: skip


# I/O.


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(rdb: Path) -> dict[str, Any]:
    """The record of ``rdb`` after checking its checksum file; SystemExit saying what is wrong."""
    sums = rdb.with_name(rdb.name + ".sha256")
    record_path = rdb.with_name(rdb.name[: -len(".rdb")] + ".json")
    for needed in (rdb, sums):
        if not needed.is_file():
            raise SystemExit(f"{needed} is missing: a backup is NAME.rdb with NAME.rdb.sha256 beside it")
    expected = sums.read_text().split()[0] if sums.read_text().split() else ""
    actual = sha256_of(rdb)
    if actual != expected:
        raise SystemExit(f"{rdb}: checksum mismatch (file {actual}, {sums.name} says {expected}); the file is damaged")
    with rdb.open("rb") as f:
        version = rdb_version(f.read(9))
    record: dict[str, Any] = json.loads(record_path.read_text()) if record_path.is_file() else {}
    return record | {"file": str(rdb), "rdb_version": version, "sha256": actual, "size": rdb.stat().st_size}


def prune(directory: Path, keep: int, max_age_days: float) -> list[str]:
    removed = []
    for backup in to_prune(backups_in(directory), keep, max_age_days, dt.datetime.now(dt.UTC)):
        for suffix in SUFFIXES:
            (directory / f"{backup.name}{suffix}").unlink(missing_ok=True)
        removed.append(backup.name)
    return removed


def _redis(config: dict[str, Any], host: str, port: int | str, *args: str, timeout: float = CLI_TIMEOUT_S) -> str:
    """redis-cli as the backup user, its password on standard input (--askpass), never on a command line."""
    argv = [config["cli"], "--no-auth-warning", "--user", config["user"], "--askpass", *config["tls_args"],
            "-h", host, "-p", str(port), *args]  # fmt: skip
    password = Path(config["password_file"]).read_text().strip()
    result = subprocess.run(argv, input=password + "\n", capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0 or result.stdout.startswith(("ERR", "NOPERM", "WRONGPASS", "NOAUTH")):
        raise RuntimeError(f"{' '.join(args[:2])} on {host}: {(result.stdout + result.stderr).strip()[:300]}")
    return result.stdout


def _write_atomic(path: Path, data: str) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(data)
    os.replace(tmp, path)


def take(config: dict[str, Any]) -> int:
    me, port = config["address"], config["port"]
    my_info = parse_info(_redis(config, me, port, "INFO", "replication"))
    master_info: dict[str, str] | None = my_info
    if my_info.get("role") != "master":
        master = (my_info.get("master_host", ""), my_info.get("master_port", ""))
        try:
            master_info = parse_info(_redis(config, *master, "INFO", "replication"))
        except (RuntimeError, subprocess.TimeoutExpired):
            master_info = None
    chosen, reason = choose_source(f"{me}:{port}", my_info, master_info, allow_master=config["allow_master"],
                                   max_lag_s=config["max_lag_s"])  # fmt: skip
    print(json.dumps({"node": config["node"], "takes_backup": chosen, "reason": reason}), flush=True)
    if not chosen:
        return 0
    server = parse_info(_redis(config, me, port, "INFO", "server"))
    keyspace = parse_info(_redis(config, me, port, "INFO", "keyspace"))
    now = dt.datetime.now(dt.UTC)
    spool = Path(config["spool_dir"])
    name = f"{config['cluster']}-{now:%Y%m%dT%H%M%SZ}-{config['node']}"
    rdb = spool / f"{name}.rdb"
    partial = spool / f"{name}.rdb.partial"
    _redis(config, me, port, "--rdb", str(partial), timeout=RDB_TIMEOUT_S)
    os.replace(partial, rdb)
    digest = sha256_of(rdb)
    with rdb.open("rb") as f:
        version = rdb_version(f.read(9))
    flavor = "valkey" if server.get("server_name") == "valkey" else "redis"
    record = {
        "time": now.isoformat(timespec="seconds"),
        "cluster": config["cluster"],
        "source_node": config["node"],
        "source_address": me,
        "source_role": my_info.get("role"),
        "master": my_info.get("master_host", me),
        "master_repl_offset": int(my_info.get("master_repl_offset", my_info.get("slave_repl_offset", "0"))),
        "flavor": flavor,
        "server_version": server.get("valkey_version") or server.get("redis_version", "?"),
        "rdb_version": version,
        "keys": sum(int(parse_info(v.replace(",", "\n").replace("=", ":")).get("keys", 0))
                    for v in keyspace.values()),  # fmt: skip
        "size": rdb.stat().st_size,
        "sha256": digest,
        "reason": reason,
    }
    _write_atomic(spool / f"{name}.rdb.sha256", f"{digest}  {name}.rdb\n")
    _write_atomic(spool / f"{name}.json", json.dumps(record, indent=2) + "\n")
    print(json.dumps({"node": config["node"], "backup": name, "record": record}), flush=True)
    ship = config.get("ship") or {}
    if ship.get("mode") == "host":
        for suffix in SUFFIXES:  # the record last: it marks the backup complete on the other side
            _ssh_put(ship, spool / f"{name}{suffix}")
        for suffix in SUFFIXES:
            (spool / f"{name}{suffix}").unlink()
        print(json.dumps({"node": config["node"], "shipped": name, "to": ship["target"]}), flush=True)
    removed = prune(spool, config["keep"], config["max_age_days"])
    if removed:
        print(json.dumps({"node": config["node"], "pruned": removed}), flush=True)
    return 0


def _ssh_put(ship: dict[str, Any], path: Path) -> None:
    argv = ["ssh", "-i", ship["key"], "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={ship['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
            "-p", str(ship["port"]), ship["target"], path.name]  # fmt: skip
    with path.open("rb") as f:
        result = subprocess.run(argv, stdin=f, capture_output=True, timeout=SSH_TIMEOUT_S, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"shipping {path.name} to {ship['target']} failed: {result.stderr.decode()[-300:]}")


def receive(directory: Path, keep: int, max_age_days: float) -> int:
    """The backup host's side of a node's ``ssh`` (forced command): one file from standard input."""
    name = os.environ.get("SSH_ORIGINAL_COMMAND", "").strip()
    if not NAME_RE.fullmatch(name) or not name.endswith(SUFFIXES):
        print(f"refused: {name!r} is not a backup file name", file=sys.stderr)
        return 2
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".incoming-", delete=False) as tmp:
        for chunk in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
            tmp.write(chunk)
    os.chmod(tmp.name, 0o640)
    os.replace(tmp.name, directory / name)
    if name.endswith(".json"):
        rdb = directory / (name[: -len(".json")] + ".rdb")
        try:
            verify(rdb)
        except SystemExit as exc:
            for suffix in SUFFIXES:
                (directory / (name[: -len(".json")] + suffix)).unlink(missing_ok=True)
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        prune(directory, keep, max_age_days)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="redis-ha-backup", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("take").add_argument("--config", type=Path, default=Path("/etc/redis-ha-backup/config.json"))
    for command in ("receive", "prune"):
        p = sub.add_parser(command)
        p.add_argument("dir", type=Path)
        p.add_argument("--keep", type=int, required=True)
        p.add_argument("--max-age-days", type=float, required=True)
    sub.add_parser("latest").add_argument("dir", type=Path)
    summary = sub.add_parser("summary")
    summary.add_argument("dir", type=Path)
    summary.add_argument("--stale-after-h", type=float, required=True)
    sub.add_parser("verify").add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "take":
        return take(json.loads(args.config.read_text()))
    if args.command == "receive":
        return receive(args.dir, args.keep, args.max_age_days)
    if args.command == "prune":
        print(json.dumps({"pruned": prune(args.dir, args.keep, args.max_age_days)}))
        return 0
    if args.command == "latest":
        found = backups_in(args.dir)
        if not found:
            raise SystemExit(f"no complete backup in {args.dir}")
        print(args.dir / f"{found[-1].name}.rdb")
        return 0
    if args.command == "summary":
        found = backups_in(args.dir) if args.dir.is_dir() else []
        record = json.loads((args.dir / f"{found[-1].name}.json").read_text()) if found else {}
        print(json.dumps(summarize(str(args.dir), found, record, dt.datetime.now(dt.UTC), args.stale_after_h)))
        return 0
    print(json.dumps(verify(args.file)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
