"""Which nodes may replicate from which master (filter_plugins/replication.py): the RDB version the
master writes against the highest one the node's server loads, the trap of a move across releases
and flavors. The discover play asks apt and the master; these tests feed it what they answer."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.ansible.conftest import load_plugin

replication = load_plugin("replication")

REDIS_70_POLICY = """redis-server:
  Installed: 5:7.0.15-1~deb12u1
  Candidate: 5:7.0.15-1~deb12u3
  Version table:
"""
VALKEY_POLICY_NOT_INSTALLED = """valkey-server:
  Installed: (none)
  Candidate: 8.1.1+dfsg1-1
"""


def test_the_version_is_the_installed_package_else_the_candidate_without_epoch_or_revision() -> None:
    assert replication.package_version(REDIS_70_POLICY) == "7.0.15"
    assert replication.package_version(REDIS_70_POLICY.replace("7.0.15-1~deb12u3", "7.2.4-1"), "latest") == "7.2.4"
    assert replication.package_version(VALKEY_POLICY_NOT_INSTALLED) == "8.1.1"
    assert replication.package_version("valkey-server:\n  Installed: (none)\n  Candidate: (none)\n") == ""
    assert replication.package_version("N: Unable to locate package valkey-server\n") == ""


def test_the_server_is_read_from_info_valkey_by_its_own_version() -> None:
    valkey = "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.1.1\r\n"
    assert replication.server_of_info(valkey) == {"flavor": "valkey", "version": "8.1.1"}
    assert replication.server_of_info("# Server\r\nredis_version:8.0.2\r\n") == {"flavor": "redis", "version": "8.0.2"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_real_servers_info_names_its_flavor_and_version(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (make system-deps)")
    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=True).stdout
    installed = re.search(r"v=(\S+)", version)
    assert installed
    port = _free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        info = ""
        for _ in range(50):
            ask = ["redis-cli", "-p", str(port), "INFO", "server"]
            answer = subprocess.run(ask, capture_output=True, text=True, check=False, timeout=5)
            if answer.returncode == 0 and "redis_version" in answer.stdout:
                info = answer.stdout
                break
            time.sleep(0.1)
        assert replication.server_of_info(info) == {"flavor": "redis", "version": installed.group(1)}
    finally:
        server.terminate()
        server.wait(timeout=10)


def refusal(node: tuple[str, str], master: tuple[str, str]) -> str:
    result: str = replication.replication_refusal(
        {"flavor": node[0], "version": node[1]}, "new1", {"flavor": master[0], "version": master[1]}, "old1"
    )
    return result


@pytest.mark.parametrize(
    ("node", "master"),
    [
        (("valkey", "8.1.1"), ("redis", "7.0.15")),  # Debian 12 Redis to Debian 13 Valkey: RDB 10 into 11
        (("redis", "8.0.2"), ("redis", "7.0.15")),  # Debian 12 Redis to Debian 13 Redis
        (("redis", "8.0.2"), ("valkey", "8.1.1")),  # RDB 11 into 12
        (("valkey", "8.1.1"), ("valkey", "8.0.2")),
        (("redis", "7.0.15"), ("redis", "7.0.11")),
        (("valkey", "9.0.0"), ("redis", "8.0.2")),  # a release the kit does not know: not refused
    ],
)
def test_a_move_replication_carries_is_allowed(node: tuple[str, str], master: tuple[str, str]) -> None:
    assert refusal(node, master) == ""


@pytest.mark.parametrize(
    ("node", "master", "loads", "writes"),
    [
        (("valkey", "8.1.1"), ("redis", "8.0.2"), 11, 12),  # valkey-io/valkey#845
        (("valkey", "8.0.2"), ("redis", "7.4.1"), 11, 12),
        (("redis", "7.0.15"), ("valkey", "8.1.1"), 10, 11),  # back from Debian 13 Valkey to Debian 12 Redis
        (("redis", "7.0.15"), ("redis", "8.0.2"), 10, 12),
    ],
)
def test_a_node_that_cannot_load_the_masters_rdb_is_refused_saying_why_and_what_to_do(
    node: tuple[str, str], master: tuple[str, str], loads: int, writes: int
) -> None:
    message = refusal(node, master)
    assert message.startswith("refusing to add new1 as a replica: "), message
    assert f"new1 would run {node[0]} {node[1]}, which loads RDB version {loads} at most" in message
    assert f"the master old1 runs {master[0]} {master[1]}, which writes RDB version {writes}" in message
    assert "give new1 a flavor and release that does (redis_ha_flavor, the Debian release)" in message
    assert ("valkey-io/valkey#845" in message) == (node[0] == "valkey")
