"""The rendered configs load in a real redis-server 7 / redis-sentinel, with the intended ACLs.

Renders the templates for a node bound to 127.0.0.1, starts the Debian binaries on free
loopback ports in a temp dir and checks what each ACL user may do, that Sentinel
authenticates to Redis with its ACL user, and that Redis's own CONFIG REWRITE (what
Sentinel triggers on a failover) leaves a config the redis role sees as unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.ansible.conftest import GOOD_PASSWORDS, PLAYBOOKS, load_plugin, run_playbook, write_inventory

pytestmark = pytest.mark.integration

redis_conf = load_plugin("redis_conf")
sentinel_plugin = load_plugin("sentinel")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Node:
    port: int
    sentinel_port: int
    workdir: Path
    rendered: dict[str, str]
    inventory: Path


def localize(text: str, workdir: Path, pid_name: str) -> str:
    """Point the Debian paths of a rendered config at the test's temp dir."""
    targets = {"aclfile": workdir / "users.acl", "dir": workdir, "pidfile": workdir / pid_name}
    for name, target in targets.items():
        text = re.sub(rf"^{name} .*$", f"{name} {target}", text, flags=re.M)
    return text


def wait_for(check: Any, what: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:  # retried until the deadline
            last = error
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}: {last}")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    for binary in ("redis-server", "redis-sentinel", "redis-cli"):
        if not shutil.which(binary):
            pytest.fail(f"{binary} is not installed: run `make system-deps`")
    tmp = tmp_path_factory.mktemp("live")
    port, sentinel_port = free_port(), free_port()
    hosts = {
        "redis": {
            "hosts": {
                "localhost": {
                    "ansible_host": "127.0.0.1",
                    "ansible_connection": "local",
                    "redis_initial_primary": True,
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                },
                "peer2": {"ansible_host": "127.0.0.2"},
                "peer3": {"ansible_host": "127.0.0.3"},
            }
        },
        "sentinel": {"hosts": {"localhost": None, "peer2": None, "peer3": None}},
    }
    inventory = write_inventory(tmp / "inventory", hosts, {})
    out = tmp / "out"
    out.mkdir()
    result = run_playbook(
        PLAYBOOKS / "render.yml",
        inventory,
        {
            **GOOD_PASSWORDS,
            "render_dir": str(out),
            "redis_ha_master_address": "127.0.0.1",
            "redis_ha_redis_port": port,
            "redis_ha_sentinel_port": sentinel_port,
            "redis_maxmemory_mb": 64,
            "redis_ha_environment": "live",
        },
    )
    assert result.ok, result.output
    rendered: dict[str, str] = json.loads((out / "rendered.json").read_text())
    workdir = tmp / "node"
    workdir.mkdir()
    (workdir / "users.acl").write_text(rendered["users.acl"])
    (workdir / "redis.conf").write_text(localize(rendered["redis.conf"], workdir, "redis.pid"))
    (workdir / "sentinel.conf").write_text(localize(rendered["sentinel.conf"], workdir, "sentinel.pid"))
    processes = []
    try:
        # Started as the Debian units start them.
        for binary, conf, log in (
            ("redis-server", "redis.conf", "redis.log"),
            ("redis-sentinel", "sentinel.conf", "sentinel.log"),
        ):
            with (workdir / log).open("w") as log_file:
                processes.append(
                    subprocess.Popen(
                        [binary, str(workdir / conf), "--supervised", "systemd", "--daemonize", "no"],
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        cwd=workdir,
                    )
                )
            if binary == "redis-server":
                wait_for(lambda: admin_client(port).ping(), "redis-server to answer PING")
        yield Node(port, sentinel_port, workdir, rendered, inventory)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def client(port: int, user: str, password: str) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, username=user, password=password, decode_responses=True, socket_timeout=5
    )


def admin_client(port: int) -> redis.Redis:
    return client(port, "admin", GOOD_PASSWORDS["redis_admin_password"])


def sentinel_cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDISCLI_AUTH": GOOD_PASSWORDS["sentinel_password"]}
    return subprocess.run(
        ["redis-cli", "--no-auth-warning", "-h", "127.0.0.1", "-p", str(node.sentinel_port), "--raw", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )


def test_redis_loads_the_acl_file_with_every_kit_user(node: Node) -> None:
    users = {line.split()[1]: line for line in admin_client(node.port).acl_list()}
    assert set(users) == {"default", "admin", "app", "replication", "sentinel", "exporter", "backup"}
    assert " off " in users["default"]


def test_unauthenticated_clients_are_refused(node: Node) -> None:
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=5).ping()


def test_master_refuses_writes_until_a_replica_is_in_sync(node: Node) -> None:
    with pytest.raises(redis.exceptions.ResponseError, match="NOREPLICAS"):
        client(node.port, "app", GOOD_PASSWORDS["redis_app_password"]).set("job", "1")


def test_app_user_may_do_what_the_client_and_rq_need(node: Node) -> None:
    admin = admin_client(node.port)
    admin.config_set("min-replicas-to-write", "0")
    try:
        app = client(node.port, "app", GOOD_PASSWORDS["redis_app_password"])
        assert app.set("rq:job:1", "payload")
        assert app.get("rq:job:1") == "payload"
        assert app.execute_command("ROLE")[0] == "master"
        assert "redis_version" in app.info()
        assert app.client_setname("rq:worker:1")
        assert app.client_getname() == "rq:worker:1"
        assert app.client_id() > 0
        assert app.client_info()["name"] == "rq:worker:1"
        assert app.eval("return redis.call('GET', KEYS[1])", 1, "rq:job:1") == "payload"
        script = app.register_script("return ARGV[1]")
        assert script(args=["lua"]) == "lua"
        assert app.publish("rq:pubsub:worker", "stop") == 0
        pubsub = app.pubsub()
        pubsub.subscribe("rq:pubsub:worker")
        assert pubsub.get_message(timeout=1)["type"] == "subscribe"
        pubsub.close()
        assert app.execute_command("WAIT", 0, 0) == 0
    finally:
        admin.config_set("min-replicas-to-write", "1")


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "maxmemory"),
        ("SHUTDOWN", "NOSAVE"),
        ("DEBUG", "SLEEP", "0"),
        ("REPLICAOF", "NO", "ONE"),
        ("ACL", "SETUSER", "evil", "on"),
        ("KEYS", "*"),
        ("CLIENT", "KILL", "ID", "1"),
        ("CLIENT", "LIST"),
        ("SCRIPT", "FLUSH"),
        ("MONITOR",),
        ("FAILOVER",),
        ("SAVE",),
    ],
)
def test_app_user_is_denied_admin_and_dangerous_commands(node: Node, command: tuple[str, ...]) -> None:
    # ACL DRYRUN asks Redis's ACL check without running the command (SHUTDOWN would end the test).
    verdict = admin_client(node.port).execute_command("ACL", "DRYRUN", "app", *command)
    assert verdict != "OK"
    assert "has no permissions to run" in verdict


def test_exporter_user_reads_metrics_but_no_data(node: Node) -> None:
    exporter = client(node.port, "exporter", GOOD_PASSWORDS["redis_exporter_password"])
    assert "used_memory" in exporter.info()
    for command in (("GET", "rq:job:1"), ("CONFIG", "GET", "masterauth"), ("SET", "x", "1")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            exporter.execute_command(*command)


def test_replication_user_may_only_replicate(node: Node) -> None:
    replication = client(node.port, "replication", GOOD_PASSWORDS["redis_replication_password"])
    assert replication.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        replication.execute_command("INFO")


def test_config_rewrite_after_a_failover_is_not_a_config_change(node: Node) -> None:
    """What Sentinel does to a node on failover must not make the next deploy rewrite or restart it."""
    conf = node.workdir / "redis.conf"
    original = redis_conf.redis_conf_options(conf.read_text())
    admin = admin_client(node.port)
    admin.config_rewrite()
    assert redis_conf.redis_conf_options(conf.read_text()) == original
    # Demoted: Sentinel sends REPLICAOF + CONFIG REWRITE; the role keeps Redis's replicaof line.
    dead_port = free_port()
    admin.execute_command("REPLICAOF", "127.0.0.1", dead_port)
    admin.config_rewrite()
    demoted = redis_conf.redis_conf_options(conf.read_text())
    assert demoted.pop("replicaof") == f"127.0.0.1 {dead_port}"
    assert demoted == original
    admin.execute_command("REPLICAOF", "NO", "ONE")
    admin.config_rewrite()
    assert redis_conf.redis_conf_options(conf.read_text()) == original


def test_sentinel_requires_its_password(node: Node) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    answer = subprocess.run(
        ["redis-cli", "-p", str(node.sentinel_port), "PING"],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )
    assert "NOAUTH" in answer.stdout + answer.stderr


def test_sentinel_monitors_the_master_through_its_acl_user(node: Node) -> None:
    def master_fields() -> dict[str, str] | None:
        lines = sentinel_cli(node, "SENTINEL", "MASTER", "mymaster").stdout.splitlines()
        fields = dict(zip(lines[::2], lines[1::2], strict=False))
        # role-reported comes from INFO, which Sentinel can only run once its ACL user authenticated.
        return fields if fields.get("role-reported") == "master" and fields.get("flags") == "master" else None

    fields = wait_for(master_fields, "Sentinel to see the master", timeout_s=20)
    assert fields["quorum"] == "2"
    assert fields["down-after-milliseconds"] == "5000"
    assert sentinel_cli(node, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster").stdout.split() == [
        "127.0.0.1",
        str(node.port),
    ]
    admin = admin_client(node.port)
    assert any(c.get("user") == "sentinel" and c.get("cmd") != "NULL" for c in admin.client_list())
    assert not [entry for entry in admin.acl_log() if entry.get("username") == "sentinel"]


def test_sentinel_tunables_are_set_only_when_they_differ(node: Node) -> None:
    desired = {
        "quorum": "2",
        "down-after-milliseconds": "5000",
        "failover-timeout": "60000",
        "parallel-syncs": "1",
        "auth-user": "sentinel",
        "auth-pass": GOOD_PASSWORDS["redis_sentinel_password"],
    }

    def changes(wanted: dict[str, str]) -> list[list[str]]:
        lines = sentinel_cli(node, "SENTINEL", "MASTER", "mymaster").stdout.splitlines()
        text = (node.workdir / "sentinel.conf").read_text()
        result: list[list[str]] = sentinel_plugin.sentinel_changes(wanted, lines, text, "mymaster")
        return result

    assert changes(desired) == []
    wanted = {**desired, "down-after-milliseconds": "6000"}
    assert changes(wanted) == [["down-after-milliseconds", "6000"]]
    assert sentinel_cli(node, "SENTINEL", "SET", "mymaster", "down-after-milliseconds", "6000").stdout.strip() == "OK"
    assert changes(wanted) == []


def run_live_tasks(node: Node, **extra: Any) -> tuple[str, dict[str, Any]]:
    flavor = {
        "cli": shutil.which("redis-cli"),
        "sentinel_config_file": str(node.workdir / "sentinel.conf"),
        "tls_dir": str(node.workdir),
    }
    result = run_playbook(
        PLAYBOOKS / "live_tasks.yml",
        node.inventory,
        {
            **GOOD_PASSWORDS,
            "redis_ha_redis_port": node.port,
            "redis_ha_sentinel_port": node.sentinel_port,
            "_redis_ha_flavor": flavor,
            **extra,
        },
    )
    assert result.ok, result.output
    decided = re.search(r"DISCOVERED (\{.*\})", result.output)
    assert decided, result.output
    recap = re.search(r"localhost\s*: ok=\d+\s+changed=(\d+)", result.output)
    assert recap, result.output
    return recap.group(1), json.loads(decided.group(1).replace('\\"', '"'))


def test_discovery_finds_the_live_master_through_sentinel(node: Node) -> None:
    _, decided = run_live_tasks(node)
    assert decided == {"address": "127.0.0.1", "live": True}


def test_sentinel_reconcile_changes_a_tunable_once_then_nothing(node: Node) -> None:
    changed, _ = run_live_tasks(node, sentinel_failover_timeout=61000)
    assert changed == "1"
    changed, _ = run_live_tasks(node, sentinel_failover_timeout=61000)
    assert changed == "0"
    lines = sentinel_cli(node, "SENTINEL", "MASTER", "mymaster").stdout.splitlines()
    assert dict(zip(lines[::2], lines[1::2], strict=False))["failover-timeout"] == "61000"
