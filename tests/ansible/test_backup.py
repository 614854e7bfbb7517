"""redis-ha-backup (roles/backup/files): who takes a backup, retention, RDB versions, and a real take/verify/load.

The decisions are pure; the rest runs a real master and replica redis-server on loopback, with the
backup user's ACL rules read from the redis role, and loads the backup the way a restore does.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis
import yaml

from tests.ansible.conftest import ROLES
from tests.support.cluster import _free_port

SCRIPT = ROLES / "backup" / "files" / "redis_ha_backup.py"
PASSWORD = "backup-secret-0123456789"
ADMIN_PASSWORD = "admin-secret-0123456789"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("redis_ha_backup_under_test", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


backup = _load()


def master_info(*replicas: tuple[str, str, int]) -> dict[str, str]:
    info = {"role": "master", "connected_slaves": str(len(replicas))}
    for i, (ip, state, lag) in enumerate(replicas):
        info[f"slave{i}"] = f"ip={ip},port=6379,state={state},offset=100,lag={lag}"
    return info


REPLICA_UP = {
    "role": "slave",
    "master_host": "10.0.0.1",
    "master_port": "6379",
    "master_link_status": "up",
    "master_sync_in_progress": "0",
}


def test_the_in_sync_replica_with_the_lowest_address_takes_the_backup() -> None:
    master = master_info(("10.0.0.10", "online", 0), ("10.0.0.9", "online", 1))
    assert backup.choose_source("10.0.0.9:6379", REPLICA_UP, master, allow_master=False, max_lag_s=10)[0]
    taken, reason = backup.choose_source("10.0.0.10:6379", REPLICA_UP, master, allow_master=False, max_lag_s=10)
    assert not taken and "10.0.0.9:6379" in reason


def test_a_lagging_or_syncing_replica_is_passed_over() -> None:
    master = master_info(("10.0.0.2", "online", 30), ("10.0.0.3", "online", 0))
    assert backup.choose_source("10.0.0.3:6379", REPLICA_UP, master, allow_master=False, max_lag_s=10)[0]
    syncing = REPLICA_UP | {"master_sync_in_progress": "1"}
    taken, reason = backup.choose_source("10.0.0.3:6379", syncing, master, allow_master=False, max_lag_s=10)
    assert not taken and "not in sync" in reason


def test_the_master_takes_it_only_when_allowed_and_no_replica_is_in_sync() -> None:
    lonely = master_info(("10.0.0.2", "wait_bgsave", 0))
    taken, reason = backup.choose_source("10.0.0.1:6379", lonely, lonely, allow_master=False, max_lag_s=10)
    assert not taken and "backup_allow_master" in reason
    assert backup.choose_source("10.0.0.1:6379", lonely, lonely, allow_master=True, max_lag_s=10)[0]
    healthy = master_info(("10.0.0.2", "online", 0))
    assert not backup.choose_source("10.0.0.1:6379", healthy, healthy, allow_master=True, max_lag_s=10)[0]


def test_a_replica_whose_master_does_not_answer_takes_none() -> None:
    taken, reason = backup.choose_source("10.0.0.2:6379", REPLICA_UP, None, allow_master=True, max_lag_s=10)
    assert not taken and "does not answer" in reason


def test_retention_keeps_the_newest_n_within_the_age_and_always_the_newest() -> None:
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    found = [backup.Backup(f"b{i}", now - dt.timedelta(days=i)) for i in range(6)]
    assert [b.name for b in backup.to_prune(found, 3, 30, now)] == ["b3", "b4", "b5"]
    assert [b.name for b in backup.to_prune(found, 10, 2.5, now)] == ["b3", "b4", "b5"]
    old = [backup.Backup("ancient", now - dt.timedelta(days=400))]
    assert backup.to_prune(old, 1, 30, now) == []


def test_rdb_version_is_read_from_the_header() -> None:
    assert backup.rdb_version(b"REDIS0011\xfa") == 11
    with pytest.raises(ValueError, match="not an RDB file"):
        backup.rdb_version(b"*2\r\n$3\r\n")


def test_valkey_refuses_the_rdb_12_of_redis_7_4_and_says_why() -> None:
    record = {"flavor": "redis", "server_version": "8.0.2"}
    refusal = backup.load_refusal(12, record, "valkey", "8.1.1")
    assert refusal and "valkey-io/valkey#845" in refusal and "RDB version 11 at most" in refusal
    assert backup.load_refusal(12, record, "redis", "7.4.2") is None
    assert backup.load_refusal(11, {"flavor": "valkey", "server_version": "8.1.1"}, "redis", "7.0.15")
    assert backup.load_refusal(10, record, "valkey", "8.1.1") is None


def backup_rules() -> str:
    """The rules the redis role gives the backup user when it is enabled (plain text in its vars)."""
    text = (ROLES / "redis" / "vars" / "main.yml").read_text()
    expression = yaml.safe_load(text)["_redis_acl_backup_user"]
    found = re.search(r"'rules': '([^']+)'", expression)
    assert found, expression
    return found.group(1)


def _start(directory: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "users.acl").write_text(
        f"user default off resetpass -@all\nuser admin on >{ADMIN_PASSWORD} ~* &* +@all\n"
        f"user backup on >{PASSWORD} {backup_rules()}\n"
    )
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
            "--aclfile", str(directory / "users.acl"), "--masteruser", "admin", "--masterauth", ADMIN_PASSWORD,
            *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _client(port: int) -> redis.Redis:
    return redis.Redis("127.0.0.1", port, username="admin", password=ADMIN_PASSWORD, decode_responses=True)


def _wait(check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the loopback nodes did not get ready")
        time.sleep(0.2)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (make system-deps)")
    # Free ports: other test processes (pytest -n) run their own servers meanwhile.
    master_port, replica_port = _free_port(), _free_port()
    processes = [_start(tmp_path / "master", master_port)]
    processes.append(_start(tmp_path / "replica", replica_port, "--replicaof", "127.0.0.1", str(master_port)))
    try:
        _wait(lambda: _client(master_port).ping())
        _client(master_port).mset({f"job:{i}": str(i) for i in range(500)})
        _wait(lambda: _client(replica_port).info("replication")["master_link_status"] == "up")
        _wait(lambda: _client(replica_port).dbsize() == 500)
        yield master_port, replica_port, tmp_path
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _config(tmp_path: Path, port: int) -> dict[str, object]:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    spool = tmp_path / f"spool-{port}"
    spool.mkdir(exist_ok=True)
    return {
        "node": f"node{port}", "cluster": "test-mymaster", "address": "127.0.0.1", "port": port,
        "cli": "redis-cli", "tls_args": [], "user": "backup", "password_file": str(tmp_path / "password"),
        "spool_dir": str(spool), "allow_master": False, "max_lag_s": 10, "keep": 2, "max_age_days": 30,
        "ship": {"mode": "controller"},
    }  # fmt: skip


@pytest.mark.integration
def test_the_replica_takes_a_checksummed_backup_that_a_fresh_server_loads(
    pair: tuple[int, int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    master_port, replica_port, tmp_path = pair
    assert backup.take(_config(tmp_path, master_port)) == 0  # the master declines: a replica is in sync
    assert not list((tmp_path / f"spool-{master_port}").iterdir())
    assert backup.take(_config(tmp_path, replica_port)) == 0
    rdb = next((tmp_path / f"spool-{replica_port}").glob("*.rdb"))
    record = backup.verify(rdb)
    assert (record["source_role"], record["keys"], record["flavor"]) == ("slave", 500, "redis")
    assert record["rdb_version"] >= 10 and record["sha256"] == backup.sha256_of(rdb)
    assert "takes_backup" in capsys.readouterr().out

    # As a restore lays it out: the backup as the base of a fresh AOF, appendonly on.
    restored = tmp_path / "restored" / "appendonlydir"
    restored.mkdir(parents=True)
    shutil.copy(rdb, restored / "appendonly.aof.1.base.rdb")
    (restored / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")
    restored_port = _free_port()
    process = _start(tmp_path / "restored", restored_port, "--appendonly", "yes")
    try:
        _wait(lambda: _client(restored_port).dbsize() == 500)
        assert _client(restored_port).get("job:499") == "499"
    finally:
        process.terminate()
        process.wait(timeout=10)

    rdb.write_bytes(rdb.read_bytes()[:-1] + b"\x00")
    with pytest.raises(SystemExit, match="checksum mismatch"):
        backup.verify(rdb)


@pytest.mark.integration
def test_the_backup_user_can_read_the_dataset_and_change_nothing(pair: tuple[int, int, Path]) -> None:
    _, replica_port, _ = pair
    user = redis.Redis("127.0.0.1", replica_port, username="backup", password=PASSWORD)
    assert user.ping()
    for command in (("SET", "x", "1"), ("GET", "job:1"), ("FLUSHALL",), ("CONFIG", "GET", "dir"), ("KEYS", "*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.execute_command(*command)


def test_the_receiving_end_takes_only_backup_file_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_ORIGINAL_COMMAND", "../etc/passwd")
    assert backup.receive(tmp_path, 3, 30) == 2
    assert not list(tmp_path.iterdir())


def test_latest_names_the_newest_complete_backup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, when in (("a", "2026-11-01T00:00:00+00:00"), ("b", "2026-11-02T00:00:00+00:00")):
        (tmp_path / f"{name}.rdb").write_bytes(b"REDIS0011")
        (tmp_path / f"{name}.json").write_text(json.dumps({"time": when}))
    (tmp_path / "c.json").write_text(json.dumps({"time": "2026-11-03T00:00:00+00:00"}))  # no RDB: incomplete
    assert backup.main(["latest", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "b.rdb")


def test_the_summary_gives_the_newest_backup_s_age_and_flags_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backup.main(["summary", str(tmp_path / "none-yet"), "--stale-after-h", "26"]) == 0
    nothing = json.loads(capsys.readouterr().out)
    assert nothing["count"] == 0 and not nothing["ok"] and "no complete backup" in nothing["says"]

    now = dt.datetime.now(dt.UTC)
    for name, hours_ago in (("older", 30.0), ("newer", 2.0)):
        (tmp_path / f"{name}.rdb").write_bytes(b"REDIS0011")
        record = {"time": (now - dt.timedelta(hours=hours_ago)).isoformat(), "source_node": "redis2",
                  "source_role": "slave", "keys": 12, "size": 9}  # fmt: skip
        (tmp_path / f"{name}.json").write_text(json.dumps(record))

    assert backup.main(["summary", str(tmp_path), "--stale-after-h", "26"]) == 0
    fresh = json.loads(capsys.readouterr().out)
    assert (fresh["count"], fresh["newest"], fresh["ok"]) == (2, "newer", True)
    assert 1.9 < fresh["age_h"] < 2.1
    assert "from redis2 (slave), 12 keys" in fresh["says"]

    assert backup.main(["summary", str(tmp_path), "--stale-after-h", "1"]) == 0
    stale = json.loads(capsys.readouterr().out)
    assert not stale["ok"] and "OLDER THAN 1 h" in stale["says"]
