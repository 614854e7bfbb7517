"""Scenario tls: Redis, replication, Sentinel, the exporters and the app speak TLS only.

The default scenario's checks run here too, over TLS (molecule.yml adds
../default/tests/test_default.py; ``Lab.tls`` gives every client the lab's CA and the verifier's
client certificate). These add what only TLS has: nothing answers in plain text or without a
certificate of the lab's CA, the links between nodes are TLS, the certificate files are readable
by their service only, and the app's redis_ha client (its own certificate, the rendered .env)
writes and reads, also across a SENTINEL FAILOVER.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.molecule.conftest import (
    FLAVOR,
    MASTER_NAME,
    REDIS_HOSTS,
    REDIS_PORT,
    SENTINEL_PORT,
    Lab,
    assert_cluster_agrees,
    assert_owned,
    wait_for,
)

pytestmark = pytest.mark.lab

APP_HOST = "app1"
APP_USER = "redis-ha-app"
APP_ENV_FILE = "/etc/redis-ha/redis-ha.env"
APP_PYTHON = "/opt/redis-ha-app/venv/bin/python"
APP_STATE_DIR = "/var/lib/redis-ha-app"
CLIENT_SCRIPT = Path(__file__).resolve().parents[1] / "files" / "tls_client.py"
CLIENT_SCRIPT_ON_APP = f"{APP_STATE_DIR}/tls_client.py"
WRITER_DIR = f"{APP_STATE_DIR}/tls-writer"
WRITER_UNIT = "rhk-tls-writer"
WRITER_MAX_S = 120
TLS_DIR = str(Path(FLAVOR.config_file).parent / "tls")
PORTS = {"redis": REDIS_PORT, "sentinel": SENTINEL_PORT}


@pytest.fixture(scope="module", autouse=True)
def tls_lab(lab: Lab) -> Lab:
    assert lab.tls_dir is not None, "RHK_LAB_TLS=1 is not set: is this the tls scenario?"
    return lab


def client_for(lab: Lab, kind: str, name: str, **tls: Any) -> redis.Redis:
    """A client of Redis or Sentinel on ``name`` with these TLS settings, which tries once."""
    if kind == "redis":
        return lab.redis_client(name, retry=Retry(NoBackoff(), 0), **tls)
    return lab.sentinel_client(name, retry=Retry(NoBackoff(), 0), **tls)


DROPPED = (
    "connection reset by peer",
    "connection closed by server",
    "eof occurred in violation of protocol",
    "broken pipe",
)
"""How a client sees a server that hung up on it: which one depends on when its TLS alert arrived."""


def ping_refused(client: redis.Redis, *reasons: str) -> None:
    """PING fails at the connection, for one of ``reasons`` or with the connection dropped (an
    authentication error instead would mean the TLS layer let the client in)."""
    with pytest.raises(redis.ConnectionError) as info:
        client.ping()
    message = str(info.value)
    assert not isinstance(info.value, redis.AuthenticationError), f"TLS let the client in: {message}"
    assert any(reason in message.lower() for reason in reasons + DROPPED), message


@pytest.mark.parametrize("kind", PORTS)
@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_plain_text_gets_no_answer(lab: Lab, name: str, kind: str) -> None:
    # The TLS port reads the plain-text command as a broken handshake and drops the connection.
    ping_refused(client_for(lab, kind, name, ssl=False))


@pytest.mark.parametrize("kind", PORTS)
@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_tls_without_a_client_certificate_is_refused(lab: Lab, name: str, kind: str) -> None:
    ping_refused(client_for(lab, kind, name, ssl_certfile=None, ssl_keyfile=None), "certificate required")


@pytest.mark.parametrize("kind", PORTS)
@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_a_client_certificate_of_another_ca_is_refused(lab: Lab, name: str, kind: str) -> None:
    assert lab.tls_dir is not None
    rogue = {"ssl_certfile": str(lab.tls_dir / "rogue.crt"), "ssl_keyfile": str(lab.tls_dir / "rogue.key")}
    ping_refused(client_for(lab, kind, name, **rogue), "unknown ca")


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_redis_has_no_plain_port_and_replicates_over_tls(lab: Lab, name: str) -> None:
    config = lab.redis_client(name).config_get("port", "tls-port", "tls-replication", "tls-auth-clients")
    assert config == {
        "port": "0",
        "tls-port": str(REDIS_PORT),
        "tls-replication": "yes",
        "tls-auth-clients": "yes",
    }


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_sentinel_has_no_plain_port_and_reaches_everything_over_tls(lab: Lab, name: str) -> None:
    # Sentinel rewrites its file but keeps these: they differ from its defaults.
    conf = lab.host(name).file(FLAVOR.sentinel_config_file).content_string.splitlines()
    for line in ("port 0", f"tls-port {SENTINEL_PORT}", "tls-replication yes"):
        assert line in conf, f"{FLAVOR.sentinel_config_file} on {name} lacks '{line}'"
    # Every other Sentinel and every node is reachable over those TLS links.
    sentinels = lab.sentinel_client(name).execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
    assert len(sentinels) == len(REDIS_HOSTS) - 1


@pytest.mark.parametrize("name", REDIS_HOSTS)
@pytest.mark.parametrize(
    "spec",
    [
        (TLS_DIR, "root", FLAVOR.user, 0o750),
        (f"{TLS_DIR}/ca.crt", "root", FLAVOR.user, 0o644),
        (f"{TLS_DIR}/node.crt", "root", FLAVOR.user, 0o644),
        (f"{TLS_DIR}/node.key", "root", FLAVOR.user, 0o640),
        ("/etc/redis-exporter/tls", "root", "prometheus", 0o750),
        ("/etc/redis-exporter/tls/ca.crt", "root", "prometheus", 0o640),
        ("/etc/redis-exporter/tls/client.crt", "root", "prometheus", 0o640),
        ("/etc/redis-exporter/tls/client.key", "root", "prometheus", 0o640),
    ],
)
def test_node_certificates_are_readable_by_their_service_only(
    lab: Lab, name: str, spec: tuple[str, str, str, int]
) -> None:
    assert_owned(lab, name, spec)


@pytest.mark.parametrize(
    "spec",
    [
        ("/etc/redis-ha/tls", "root", APP_USER, 0o750),
        ("/etc/redis-ha/tls/ca.crt", "root", APP_USER, 0o644),
        ("/etc/redis-ha/tls/client.crt", "root", APP_USER, 0o644),
        ("/etc/redis-ha/tls/client.key", "root", APP_USER, 0o640),
    ],
)
def test_app_client_certificate_is_readable_by_the_service_user_only(lab: Lab, spec: tuple[str, str, str, int]) -> None:
    assert_owned(lab, APP_HOST, spec)


def test_app_env_turns_tls_on_with_the_app_certificate(lab: Lab) -> None:
    env = dict(
        line.split("=", 1) for line in lab.host(APP_HOST).file(APP_ENV_FILE).content_string.splitlines() if "=" in line
    )
    assert env["REDIS_TLS"] == "'1'"
    assert env["REDIS_TLS_CA_FILE"] == "'/etc/redis-ha/tls/ca.crt'"
    assert env["REDIS_TLS_CERT_FILE"] == "'/etc/redis-ha/tls/client.crt'"
    assert env["REDIS_TLS_KEY_FILE"] == "'/etc/redis-ha/tls/client.key'"


def install_client_script(lab: Lab) -> None:
    # testinfra %-formats the command with the quoted arguments: %% is a literal %.
    result = lab.host(APP_HOST).run(
        "printf '%%s' %s > %s && chmod 0644 %s", CLIENT_SCRIPT.read_text(), CLIENT_SCRIPT_ON_APP, CLIENT_SCRIPT_ON_APP
    )
    assert result.rc == 0, result.stderr


def as_the_app(*args: str, unit: str | None = None) -> str:
    """A command that runs tls_client.py as the worker unit runs: the service user with the app's .env."""
    common = ["systemd-run", "--quiet", f"--property=User={APP_USER}", f"--property=EnvironmentFile={APP_ENV_FILE}"]
    mode = [f"--unit={unit}"] if unit else ["--wait", "--pipe", "--collect"]
    return shlex.join([*common, *mode, APP_PYTHON, CLIENT_SCRIPT_ON_APP, *args])


def test_the_app_client_writes_and_reads_over_tls(lab: Lab) -> None:
    install_client_script(lab)
    result = lab.host(APP_HOST).run(as_the_app("once", "tls:check", "written-over-tls"))
    assert result.rc == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["tls"] is True
    assert answer["read"] == "written-over-tls"
    master = wait_for(lambda: _the_master(lab))
    assert answer["master"] == f"{lab.ips[master]}:{REDIS_PORT}"


def _the_master(lab: Lab) -> str:
    roles = {name: lab.redis_client(name).execute_command("ROLE")[0] for name in REDIS_HOSTS}
    masters = [name for name, role in roles.items() if role == "master"]
    assert len(masters) == 1, roles
    return masters[0]


# Last in this file on purpose: it moves the master (the checks above find it wherever it is).
@pytest.mark.units(FLAVOR.server_unit, FLAVOR.sentinel_unit)
def test_the_app_client_follows_a_sentinel_failover_over_tls(lab: Lab) -> None:
    host = lab.host(APP_HOST)
    install_client_script(lab)
    before = wait_for(lambda: _the_master(lab))
    assert host.run("rm -rf %s && install -d -o %s -m 0750 %s", WRITER_DIR, APP_USER, WRITER_DIR).rc == 0
    started = host.run(as_the_app("loop", WRITER_DIR, str(WRITER_MAX_S), unit=WRITER_UNIT))
    assert started.rc == 0, started.stderr
    try:
        time.sleep(3)  # the writer runs on the old master for a moment
        answer = wait_for(
            lambda: lab.sentinel_client(REDIS_HOSTS[0]).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        )
        assert answer in ("OK", b"OK", True), answer

        def moved() -> str:
            after = _the_master(lab)
            assert after != before, f"{before} is still master"
            return after

        after = wait_for(moved)
        assert_cluster_agrees(lab, lab.ips[after])
        time.sleep(5)  # and on the new one
    finally:
        host.run("touch %s/stop", WRITER_DIR)
        deadline = time.monotonic() + 30
        while not host.file(f"{WRITER_DIR}/writer.json").exists and time.monotonic() < deadline:
            time.sleep(1)
        host.run("systemctl stop %s; systemctl reset-failed %s", WRITER_UNIT, WRITER_UNIT)
    summary = json.loads(host.file(f"{WRITER_DIR}/writer.json").content_string)
    print(f"tls writer: {summary['writes']} writes, {len(summary['errors'])} errors, masters {summary['masters']}")
    assert summary["errors"] == [], summary["errors"]
    assert summary["masters"][0] == f"{lab.ips[before]}:{REDIS_PORT}", summary["masters"]
    assert summary["masters"][-1] == f"{lab.ips[after]}:{REDIS_PORT}", summary["masters"]
    # The last acknowledged write is on the new master.
    assert lab.redis_client(after).get(summary["last_key"]) == str(summary["writes"] - 1)
