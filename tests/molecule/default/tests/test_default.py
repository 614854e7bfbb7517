"""Scenario default: after a fresh deploy (and a second one that changed nothing) the cluster is
up, locked down and healthy, and every host runs exactly what it should.

The trixie-redis and trixie-valkey scenarios run these same checks (their molecule.yml points the
verifier here); ``FLAVOR`` names the units, packages and paths of the flavor they deployed."""

from __future__ import annotations

import re

import pytest
import redis

from tests.molecule.conftest import (
    APP_HOSTS,
    EXPORTER_REDIS_PORT,
    EXPORTER_SENTINEL_PORT,
    FLAVOR,
    MASTER_NAME,
    REDIS_HOSTS,
    REDIS_PORT,
    SENTINEL_PORT,
    Lab,
    assert_owned,
    wait_for,
)

pytestmark = pytest.mark.lab

SERVER_UNIT = FLAVOR.server_unit
SENTINEL_UNIT = FLAVOR.sentinel_unit
REDIS_UNITS = (SERVER_UNIT, SENTINEL_UNIT, "redis-exporter@redis", "redis-exporter@sentinel")
WORKER_UNIT = "rq-worker@default"
APP_ENV_FILE = "/etc/redis-ha/redis-ha.env"


KIT_PORTS = {REDIS_PORT, SENTINEL_PORT, EXPORTER_REDIS_PORT, EXPORTER_SENTINEL_PORT}


def kit_sockets(listening: list[str]) -> set[str]:
    """The TCP listening sockets (``tcp://ADDR:PORT``) on one of the kit's ports."""
    return {s for s in listening if s.startswith("tcp") and int(s.rsplit(":", 1)[1]) in KIT_PORTS}


def master_of(lab: Lab) -> str:
    """The single host whose ROLE is master (asserts there is exactly one)."""
    roles = {name: lab.redis_client(name).execute_command("ROLE")[0] for name in REDIS_HOSTS}
    masters = [name for name, role in roles.items() if role == "master"]
    assert len(masters) == 1, f"expected exactly one master by ROLE, got {roles}"
    return masters[0]


@pytest.mark.units(*REDIS_UNITS)
@pytest.mark.parametrize("name", REDIS_HOSTS)
@pytest.mark.parametrize("unit", REDIS_UNITS)
def test_redis_host_services_are_active_and_enabled(lab: Lab, name: str, unit: str) -> None:
    service = lab.host(name).service(unit)
    assert service.is_running, f"{unit} is not active on {name}"
    assert service.is_enabled, f"{unit} is not enabled on {name}"


@pytest.mark.units(WORKER_UNIT)
@pytest.mark.parametrize("name", APP_HOSTS)
def test_app_host_runs_the_worker_and_no_redis(lab: Lab, name: str) -> None:
    host = lab.host(name)
    if not host.file("/etc/systemd/system/rq-worker@.service").exists:
        pytest.skip("no worker unit: templates/rq-worker.service.j2 did not exist at converge")
    assert host.service(WORKER_UNIT).is_running
    assert host.service(WORKER_UNIT).is_enabled
    assert not host.package(FLAVOR.server_package).is_installed


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_redis_host_listens_only_on_its_address_and_loopback(lab: Lab, name: str) -> None:
    ip = lab.ips[name]
    listening = kit_sockets(lab.host(name).socket.get_listening_sockets())
    expected = {
        f"tcp://{ip}:{REDIS_PORT}",
        f"tcp://127.0.0.1:{REDIS_PORT}",
        f"tcp://{ip}:{SENTINEL_PORT}",
        f"tcp://127.0.0.1:{SENTINEL_PORT}",
        f"tcp://{ip}:{EXPORTER_REDIS_PORT}",
        f"tcp://{ip}:{EXPORTER_SENTINEL_PORT}",
    }
    assert expected <= listening, f"{name} does not listen on {sorted(expected - listening)}"
    assert not listening - expected, f"{name} also listens on {sorted(listening - expected)}"


@pytest.mark.parametrize("name", APP_HOSTS)
def test_app_host_listens_on_no_kit_port(lab: Lab, name: str) -> None:
    assert not kit_sockets(lab.host(name).socket.get_listening_sockets())


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_redis_refuses_an_unauthenticated_client(lab: Lab, name: str) -> None:
    with pytest.raises(redis.AuthenticationError):
        lab.redis_client(name, auth=False).get("anything")


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_sentinel_refuses_an_unauthenticated_client(lab: Lab, name: str) -> None:
    with pytest.raises(redis.AuthenticationError):
        lab.sentinel_client(name, auth=False).execute_command("SENTINEL", "MASTERS")


@pytest.mark.units(SERVER_UNIT, SENTINEL_UNIT)
def test_exactly_one_master_and_every_sentinel_agrees(lab: Lab) -> None:
    def agreed() -> str:
        master = master_of(lab)
        for name in REDIS_HOSTS:
            addr = lab.sentinel_client(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            assert addr is not None and addr[0] == lab.ips[master], f"sentinel on {name} names {addr}, not {master}"
        return master

    wait_for(agreed)


@pytest.mark.units(SERVER_UNIT)
def test_every_replica_has_its_link_to_the_master_up(lab: Lab) -> None:
    def linked() -> None:
        master = master_of(lab)
        for name in REDIS_HOSTS:
            if name == master:
                continue
            info = lab.redis_client(name).info("replication")
            assert info["role"] == "slave"
            assert info["master_host"] == lab.ips[master], f"{name} replicates {info['master_host']}"
            assert info["master_link_status"] == "up", f"{name}: master_link_status {info['master_link_status']}"

    wait_for(linked)


@pytest.mark.units(SENTINEL_UNIT)
@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_sentinel_ckquorum_is_ok(lab: Lab, name: str) -> None:
    answer = wait_for(lambda: lab.sentinel_client(name).execute_command("SENTINEL", "CKQUORUM", MASTER_NAME))
    assert str(answer).startswith("OK"), answer


@pytest.mark.units("redis-exporter@redis")
@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_redis_exporter_sees_its_redis(lab: Lab, name: str) -> None:
    assert re.search(r"^redis_up 1$", lab.metrics(name, EXPORTER_REDIS_PORT), re.MULTILINE)


@pytest.mark.units("redis-exporter@sentinel")
@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_sentinel_exporter_reports_the_master(lab: Lab, name: str) -> None:
    master_ip = lab.ips[master_of(lab)]

    def reported() -> None:
        body = lab.metrics(name, EXPORTER_SENTINEL_PORT)
        lines = [line for line in body.splitlines() if line.startswith("redis_sentinel_master_status{")]
        ours = [line for line in lines if f'master_name="{MASTER_NAME}"' in line]
        assert ours, f"no redis_sentinel_master_status for {MASTER_NAME} in {lines}"
        assert f'master_address="{master_ip}:{REDIS_PORT}"' in ours[0], ours[0]
        assert ours[0].endswith(" 1"), ours[0]

    wait_for(reported)


@pytest.mark.parametrize("name", REDIS_HOSTS)
@pytest.mark.parametrize(
    "spec",
    [
        (FLAVOR.config_file, FLAVOR.user, FLAVOR.user, 0o640),
        (FLAVOR.acl_file, FLAVOR.user, FLAVOR.user, 0o640),
        (FLAVOR.sentinel_config_file, FLAVOR.user, FLAVOR.user, 0o640),
        ("/etc/redis-exporter", "root", "prometheus", 0o750),
        ("/etc/redis-exporter/redis.password.json", "root", "prometheus", 0o640),
        ("/etc/redis-exporter/sentinel.password.json", "root", "prometheus", 0o640),
        ("/etc/systemd/system/redis-exporter@.service", "root", "root", 0o644),
    ],
)
def test_redis_host_config_files_have_their_modes_and_owners(
    lab: Lab, name: str, spec: tuple[str, str, str, int]
) -> None:
    assert_owned(lab, name, spec)


@pytest.mark.parametrize("name", APP_HOSTS)
def test_app_env_file_is_owned_by_root_and_readable_by_the_service_group_only(lab: Lab, name: str) -> None:
    """root:redis-ha-app 0640: the worker reads its credentials but cannot rewrite them."""
    f = lab.host(name).file(APP_ENV_FILE)
    assert f.exists
    assert (f.user, f.group, f.mode) == ("root", "redis-ha-app", 0o640)
    # Not `assert ... in f.content_string`: pytest would print the passwords on failure.
    names = [line.split("=", 1)[0] for line in f.content_string.splitlines() if "=" in line]
    assert {"REDIS_SENTINELS", "REDIS_MASTER_NAME", "REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"} <= set(names)
