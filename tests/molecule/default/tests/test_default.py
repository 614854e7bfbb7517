"""Scenario default: after a fresh deploy (and a second one that changed nothing) the cluster is
up, locked down and healthy, and every host runs exactly what it should.

The trixie-redis and trixie-valkey scenarios run these same checks (their molecule.yml points the
verifier here); ``FLAVOR`` names the units, packages and paths of the flavor they deployed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import redis
import redis_ha

from tests.molecule.conftest import (
    APP_HOSTS,
    EXPORTER_REDIS_PORT,
    EXPORTER_SENTINEL_PORT,
    FLAVOR,
    MASTER_NAME,
    REDIS_HOSTS,
    REDIS_PORT,
    REPO,
    SENTINEL_PORT,
    Lab,
    assert_owned,
    run_playbook,
    wait_for,
)
from tests.support import privilege
from tests.support.writer import background_writes

pytestmark = pytest.mark.lab

CONVERGE = REPO / "tests" / "molecule" / "shared" / "converge.yml"
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
    wanted = {"REDIS_SENTINELS", "REDIS_MASTER_NAME", "REDIS_PASSWORD_FILE", "REDIS_SENTINEL_PASSWORD_FILE"}
    assert wanted <= set(names)
    # The passwords sit in files the client reads again when a deploy rotates them.
    for secret, path in (
        ("redis_app_password", "/etc/redis-ha/redis-password"),
        ("sentinel_app_password", "/etc/redis-ha/sentinel-password"),
    ):
        file = lab.host(name).file(path)
        assert (file.user, file.group, file.mode) == ("root", "redis-ha-app", 0o640), path
        holds = file.content_string.strip() == lab.secret(secret)  # compared aside: no password in a report
        assert holds, f"{path} does not hold {secret}"


# Least privilege: what the app's credentials (the .env the deploy renders) can and cannot do.


def app_env(lab: Lab) -> dict[str, str]:
    """The app's connection settings as the deploy rendered them on the controller."""
    path = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "deploy" / "redis-ha.env"
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {name: value.strip("'") for name, value in pairs}


def app_client(lab: Lab, env: dict[str, str], name: str, *, sentinel: bool) -> redis.Redis:
    """A plain RESP2 client with nothing but the app's credentials (the probes need RESP2)."""
    prefix = "REDIS_SENTINEL_" if sentinel else "REDIS_"
    return redis.Redis(
        lab.ips[name],
        SENTINEL_PORT if sentinel else REDIS_PORT,
        username=env[f"{prefix}USERNAME"],
        password=env[f"{prefix}PASSWORD"],
        socket_timeout=3.0,
        decode_responses=True,
        protocol=2,
        **lab.tls(),
    )


def test_the_app_env_holds_no_admin_password(lab: Lab) -> None:
    env = app_env(lab)
    for secret in ("redis_admin_password", "sentinel_password", "sentinel_peer_password", "redis_sentinel_password"):
        # Not `assert secret not in ...`: pytest would print the password on failure.
        assert lab.secret(secret) not in env.values(), f"the app's .env holds {secret}"
    assert env["REDIS_SENTINEL_USERNAME"] == "app"


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_the_sentinel_exporter_holds_only_the_read_only_password(lab: Lab, name: str) -> None:
    content = lab.host(name).file("/etc/redis-exporter/sentinel.password.json").content_string
    found = [secret for secret in ("sentinel_password", "sentinel_app_password") if lab.secret(secret) in content]
    assert found == ["sentinel_app_password"]


def test_the_app_credentials_can_take_none_of_the_forbidden_actions(lab: Lab) -> None:
    env = app_env(lab)
    master, sentinel = master_of(lab), REDIS_HOSTS[0]
    allowed = privilege.allowed_forbidden_actions(
        lambda: app_client(lab, env, master, sentinel=False), lambda: app_client(lab, env, sentinel, sentinel=True)
    )
    assert allowed == [], "\n".join(allowed)
    # And they can do their job: find the master, follow failovers, use RQ's channels.
    with app_client(lab, env, sentinel, sentinel=True) as on_sentinel:
        assert on_sentinel.sentinel_get_master_addr_by_name(MASTER_NAME)[0] == lab.ips[master]
        pubsub = on_sentinel.pubsub()
        pubsub.subscribe("+switch-master")
        pubsub.close()
    with app_client(lab, env, master, sentinel=False) as on_redis:
        assert on_redis.publish("rq:pubsub:probe", "x") >= 0


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_sentinels_log_into_each_other_as_the_peer_user(lab: Lab, name: str) -> None:
    def peers_use_the_peer_user() -> None:
        with lab.sentinel_client(name) as sentinel:
            links = [c for c in sentinel.client_list() if str(c.get("name", "")).startswith("sentinel-")]
        assert len(links) == len(REDIS_HOSTS) - 1, links
        assert {c["user"] for c in links} == {"sentinel-peer"}, links

    wait_for(peers_use_the_peer_user)


@pytest.mark.timeout(900)  # a whole deploy at -vvv: minutes on a loaded machine
def test_a_second_deploy_changes_nothing_and_shows_no_secret(lab: Lab, tmp_path: Path) -> None:
    """A second deploy at -vvv, every part run in full (FULL=1; the next test runs the quick path), with
    every host's process list sampled while it runs: it changes nothing (scenario default's idempotence
    check), and no password is on a command line or in its output."""
    samplers = []
    for name in (*REDIS_HOSTS, *APP_HOSTS):
        out = (tmp_path / f"ps-{name}.txt").open("wb")
        loop = "for i in $(seq 1500); do ps -eww -o args; sleep 0.2; done"  # 300 s at most
        ssh = ["ssh", "-F", str(lab.state_dir / "ssh_config"), name, loop]
        samplers.append((subprocess.Popen(ssh, stdout=out, stderr=subprocess.DEVNULL), out))
    master_before = master_of(lab)
    try:
        deploy = run_playbook(CONVERGE, "-vvv", "-e", "redis_ha_full_deploy=true")
    finally:
        for process, out in samplers:
            process.terminate()
            process.wait(timeout=10)
            out.close()
    assert deploy.returncode == 0, deploy.stdout[-3000:]
    plain = re.sub(r"\x1b\[[0-9;]*m", "", deploy.stdout)  # in case colour is forced all the same
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", plain, re.MULTILINE)
    assert {host for host, _ in recap} >= {*REDIS_HOSTS, *APP_HOSTS}, recap
    assert [(host, changed) for host, changed in recap if changed != "0"] == [], "the second deploy changed something"
    # Never demoted by re-templating old topology, also after failovers (scenario partition's).
    assert master_of(lab) == master_before, "the second deploy moved the master"
    processes = "".join(path.read_text(errors="replace") for path in tmp_path.glob("ps-*.txt"))
    # Ansible runs each module as `/bin/sh -c '<environment> python3 && sleep 0'` (pipelining): the
    # command line an `environment:` secret used to show up in.
    assert processes.count("&& sleep 0") >= 10, "the sampler saw (almost) no Ansible module run: it proves nothing"
    for secret in sorted(p.name for p in (lab.state_dir / "secrets").iterdir()):
        value = lab.secret(secret)
        # Named, never shown: a failure must not print the password it found.
        assert value not in deploy.stdout + deploy.stderr, f"{secret} appears in the -vvv output"
        assert value not in processes, f"{secret} appears in a process list on a host"


def _recap(deploy: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert deploy.returncode == 0, deploy.stdout[-3000:]
    return {
        host: int(changed)
        for host, changed in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", deploy.stdout, re.MULTILINE)
    }


@pytest.mark.timeout(600)
def test_a_deploy_skips_the_parts_in_place_and_heals_the_others(lab: Lab) -> None:
    """After the full deploy above every host's stamps hold: the next deploy runs no role at all. An
    exporter stopped by hand is noticed: the deploy after that runs only that host's exporter part
    and starts it again."""
    started = time.monotonic()
    recap = _recap(deploy := run_playbook(CONVERGE))
    print(f"deploy with every part in place: {time.monotonic() - started:.1f} s, changed {recap}")
    assert recap and set(recap.values()) == {0}, recap
    ran = set(re.findall(r"^TASK \[(\w+) :", deploy.stdout, re.MULTILINE))
    assert ran <= {"redis_ha"}, f"roles ran although every part was in place: {sorted(ran)}"

    host = REDIS_HOSTS[-1]
    lab.host(host).run_expect([0], "systemctl stop redis-exporter@redis.service")
    started = time.monotonic()
    recap = _recap(deploy := run_playbook(CONVERGE))
    print(f"deploy after an exporter was stopped on {host}: {time.monotonic() - started:.1f} s, changed {recap}")
    assert {name for name, changed in recap.items() if changed} == {host}, recap
    ran = set(re.findall(r"^TASK \[(\w+) :", deploy.stdout, re.MULTILINE))
    assert ran <= {"redis_ha", "redis_exporter"}, f"more than the exporter part ran: {sorted(ran)}"
    assert lab.host(host).service("redis-exporter@redis").is_running


def _main_pids(lab: Lab) -> dict[str, str]:
    return {
        f"{name} {unit}": lab.host(name).check_output(f"systemctl show --property MainPID --value {unit}")
        for name in REDIS_HOSTS
        for unit in (SERVER_UNIT, SENTINEL_UNIT)
    }


def test_a_deploy_that_would_switch_a_nodes_flavor_in_place_is_refused_before_anything_changes(lab: Lab) -> None:
    """A host keeps its flavor: a deploy with the other one is refused by every node's preflight
    (on Debian 12, Valkey is not there at all), and no server, Sentinel or package changes."""
    other = "valkey" if FLAVOR.name == "redis" else "redis"
    pids = _main_pids(lab)
    deploy = run_playbook(CONVERGE, "-e", f"redis_ha_flavor={other}")
    assert deploy.returncode != 0, deploy.stdout[-3000:]
    debian = lab.host(REDIS_HOSTS[0]).file("/etc/debian_version").content_string.strip()
    refused = (
        "the kit supports Debian 12 (redis) and Debian 13 (redis or valkey)"
        if other == "valkey" and debian < "13"
        else f"runs {FLAVOR.name} ({FLAVOR.server_package} is installed) and redis_ha_flavor is {other} for it"
    )
    # A failed task's message goes to stderr (Molecule's ansible.cfg sets display_failed_stderr).
    said = " ".join((deploy.stdout + deploy.stderr).split())
    assert refused in said, said[-3000:]
    assert _main_pids(lab) == pids, "a refused deploy restarted a server or a Sentinel"
    for name in REDIS_HOSTS:
        status = lab.host(name).run(
            f"dpkg-query --show --showformat='${{db:Status-Status}}' {other}-server {other}-tools"
        )
        assert "installed" not in status.stdout.replace("not-installed", ""), f"{name}: {status.stdout}"


def test_a_deploy_that_would_switch_tls_on_a_running_cluster_is_refused_before_anything_changes(
    lab: Lab, tmp_path: Path
) -> None:
    """TLS stays as the cluster was deployed: the other setting (with TLS files that exist, so the
    inventory check passes) is refused by every node's preflight, naming both configs, and no
    server or Sentinel restarts or changes its ports."""
    want_tls = lab.tls_dir is None
    extra: dict[str, object] = {"redis_ha_tls": want_tls}
    if want_tls:
        for name in ("ca", "cert", "key", "exporter-cert", "exporter-key"):
            (tmp_path / name).write_text("never read: the deploy is refused first\n")
        extra |= {
            "redis_ha_tls_ca_src": str(tmp_path / "ca"),
            "redis_ha_tls_cert_src": str(tmp_path / "cert"),
            "redis_ha_tls_key_src": str(tmp_path / "key"),
            "redis_exporter_tls_cert_src": str(tmp_path / "exporter-cert"),
            "redis_exporter_tls_key_src": str(tmp_path / "exporter-key"),
        }
    configs = [FLAVOR.config_file, FLAVOR.sentinel_config_file]

    def tls_ports() -> dict[str, str]:
        return {
            f"{name} {config}": lab.host(name).check_output(f"grep -E '^(port|tls-port) ' {config}")
            for name in REDIS_HOSTS
            for config in configs
        }

    pids, ports = _main_pids(lab), tls_ports()
    deploy = run_playbook(CONVERGE, "-e", json.dumps(extra))
    assert deploy.returncode != 0, deploy.stdout[-3000:]
    said = " ".join((deploy.stdout + deploy.stderr).split())
    running = "listen in plain text" if want_tls else "listen on TLS only"
    assert f"redis_ha_tls is {str(want_tls).lower()} but {' and '.join(configs)} {running}" in said, said[-3000:]
    assert "A deploy does not switch TLS on a running cluster" in said, said[-3000:]
    assert "run make tls-switch ENV=..." in said, said[-3000:]
    assert _main_pids(lab) == pids, "a refused deploy restarted a server or a Sentinel"
    assert tls_ports() == ports


@pytest.mark.timeout(600)
def test_a_node_that_cannot_load_the_masters_rdb_is_refused_before_it_gets_a_server(lab: Lab, tmp_path: Path) -> None:
    """Redis 8 writes RDB 12, which Valkey 8 cannot load (valkey-io/valkey#845): a Valkey node added
    to a Redis 8 cluster would stay empty. The app host, offered as such a node, is refused once
    discovery has asked the master, before any server package; the client tools the discovery
    needed are removed again."""
    debian = lab.host(REDIS_HOSTS[0]).file("/etc/debian_version").content_string.strip()
    if FLAVOR.name != "redis" or debian < "13":
        pytest.skip("only a Redis 7.4+ master (Debian 13's Redis 8) writes an RDB version the other flavor cannot load")
    new = APP_HOSTS[0]
    extra = tmp_path / "new-valkey-node.yml"
    extra.write_text(
        f"all:\n  children:\n    redis:\n      hosts:\n        {new}:\n          redis_ha_flavor: valkey\n"
    )
    pids = _main_pids(lab)
    try:
        deploy = run_playbook(CONVERGE, "-i", str(extra))
        assert deploy.returncode != 0, deploy.stdout[-3000:]
        plain = " ".join((deploy.stdout + deploy.stderr).split())
        assert f"refusing to add {new} as a replica: {new} would run valkey 8" in plain, deploy.stdout[-3000:]
        assert "which loads RDB version 11 at most" in plain and "which writes RDB version 12" in plain, plain[-3000:]
        refusal = re.search(r"refusing to add .*?\(README, Moving the cluster to new hosts\)\.", plain)
        print("deploy with a Valkey node added to a Redis 8 cluster:", refusal.group(0) if refusal else plain[-600:])
    finally:
        lab.host(new).run("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q valkey-tools")
    assert lab.host(new).run("dpkg-query --show --showformat='${db:Status-Status}' valkey-server").stdout != "installed"
    assert not lab.host(new).package("valkey-tools").is_installed
    assert _main_pids(lab) == pids, "a refused deploy restarted a server or a Sentinel"


def test_an_app_with_its_env_rides_through_a_sentinel_failover(lab: Lab) -> None:
    """Last in this file: a failover changes the master the checks above looked at."""
    if lab.tls_dir is not None:
        # tests/test_tls.py (run before these checks) already failed the master over, and its own
        # check covers the app's client over TLS.
        pytest.skip("scenario tls fails the master over in test_tls.py instead")
    env = {**app_env(lab), "REDIS_RETRY_DEADLINE": "30"}
    client = redis_ha.connect(env=env)
    old = master_of(lab)
    try:
        with background_writes(client, "least-privilege", max_writes=20000, keys=100) as writer:
            time.sleep(1)
            with lab.sentinel_client(REDIS_HOSTS[0]) as sentinel:
                assert sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME) in ("OK", b"OK", True)
            wait_for(lambda: assert_other_master(lab, old))
            time.sleep(2)
    finally:
        client.close()
    print(
        f"least-privilege failover: writes={writer.writes} errors={len(writer.errors)} old={old} new={master_of(lab)}"
    )
    assert writer.errors == []
    assert writer.writes > 100


def assert_other_master(lab: Lab, old: str) -> None:
    assert master_of(lab) != old
