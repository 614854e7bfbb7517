"""Shared testinfra fixtures for the Molecule scenarios (tests/molecule/<scenario>/tests/).

The scenario's lab is named by RHK_LAB_NAME (set in its molecule.yml); its SSH config, keys and
secrets live in <repo>/.lab/labs/<name>/. RHK_FLAVOR (redis or valkey, as the scenario deploys)
names the units, packages, paths and user the checks expect (``FLAVOR``). Hosts are reached over
SSH with that config (testinfra's ssh backend, one multiplexed connection per host); Redis,
Sentinel and the exporters are also queried straight from the controller, as an app or Prometheus
would. With RHK_LAB_TLS=1 (scenario tls) those clients speak TLS (``Lab.tls``: the CA and the
verifier's client certificate its prepare.yml made in Molecule's ephemeral directory).

A test marked ``@pytest.mark.units("redis-server", ...)`` that fails gets the tail of those
units' journals from every lab host appended to its report.

The drills (scenarios failover, partition) share their producer and job (shared/files/app), their
start and finish (shared/drill_start.yml, shared/drill_finish.yml) and here ``drill_summary`` and
the ``assert_*`` checks on what a drill did to the app's jobs and to the cluster.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import testinfra
import yaml
from redis_ha.drill.records import parse_executions

REPO = Path(__file__).resolve().parents[2]
LAB_SCRIPT = REPO / "tests" / "lab" / "lab.py"
REDIS_HOSTS = ("redis1", "redis2", "redis3")
APP_HOSTS = ("app1",)
MONITORING_UNITS = ("prometheus", "prometheus-alertmanager", "alert-receiver")
"""Units of the monitoring host (app1, in the scenarios that deploy monitoring)."""
MASTER_NAME = "mymaster"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
EXPORTER_REDIS_PORT = 9121
EXPORTER_SENTINEL_PORT = 9355
ADMIN_USER = "admin"
SOCKET_TIMEOUT_S = 3.0
SETTLE_TIMEOUT_S = 60.0
"""Seconds a check waits for the cluster to agree (Sentinel gossip after a deploy or failover)."""
JOURNAL_LINES = 40


@dataclasses.dataclass(frozen=True)
class Flavor:
    """What Debian's packages of one flavor are called and where they put things (as roles/redis_ha/vars)."""

    name: str
    server_unit: str
    sentinel_unit: str
    server_package: str
    config_file: str
    acl_file: str
    sentinel_config_file: str
    user: str


FLAVORS = {
    "redis": Flavor(
        name="redis",
        server_unit="redis-server",
        sentinel_unit="redis-sentinel",
        server_package="redis-server",
        config_file="/etc/redis/redis.conf",
        acl_file="/etc/redis/users.acl",
        sentinel_config_file="/etc/redis/sentinel.conf",
        user="redis",
    ),
    "valkey": Flavor(
        name="valkey",
        server_unit="valkey-server",
        sentinel_unit="valkey-sentinel",
        server_package="valkey-server",
        config_file="/etc/valkey/valkey.conf",
        acl_file="/etc/valkey/users.acl",
        sentinel_config_file="/etc/valkey/sentinel.conf",
        user="valkey",
    ),
}
FLAVOR = FLAVORS[os.environ.get("RHK_FLAVOR") or "redis"]
"""The flavor the scenario deployed (its molecule.yml sets RHK_FLAVOR; default redis)."""

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "units(*names): systemd units whose journals a failure report shows")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything here needs a Molecule lab: mark it ``lab``, and skip it outside Molecule.

    A scenario's own checks run before those it borrows from another scenario (partition and tls
    run ../default/tests/test_default.py too, whose last check fails the master over): they judge
    what the scenario's side effect left, before anything else changes it."""
    outside = "RHK_LAB_NAME" not in os.environ
    for item in items:
        if Path(str(item.path)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.lab)
            if outside:
                item.add_marker(pytest.mark.skip(reason="runs under Molecule only (RHK_LAB_NAME is not set)"))
    scenario = os.environ.get("MOLECULE_SCENARIO_DIRECTORY")
    if scenario:
        items.sort(key=lambda item: not Path(str(item.path)).is_relative_to(Path(scenario)))


@dataclasses.dataclass
class Lab:
    """One scenario's lab: addresses, secrets and SSH access to its hosts."""

    name: str
    state_dir: Path
    ips: dict[str, str]
    control_dir: str
    tls_dir: Path | None = None
    """The scenario's CA and client certificates (RHK_LAB_TLS=1: <ephemeral dir>/tls); None: no TLS."""

    def tls(self) -> dict[str, Any]:
        """redis.Redis arguments for the lab's TLS ports: its CA, and the verifier's client certificate.

        A check overrides them (``options`` of ``redis_client``, ``sentinel_client``): ``ssl=False``
        (plain text), ``ssl_certfile=None, ssl_keyfile=None`` (no client certificate).
        """
        if self.tls_dir is None:
            return {}
        return {
            "ssl": True,
            "ssl_cert_reqs": "required",
            "ssl_ca_certs": str(self.tls_dir / "ca.crt"),
            "ssl_certfile": str(self.tls_dir / "verifier.crt"),
            "ssl_keyfile": str(self.tls_dir / "verifier.key"),
        }

    def secret(self, name: str) -> str:
        return (self.state_dir / "secrets" / name).read_text().strip()

    def host(self, name: str) -> Any:
        return testinfra.get_host(
            f"ssh://{name}",
            ssh_config=str(self.state_dir / "ssh_config"),
            controlpath=f"{self.control_dir}/%%C",  # testinfra %-formats the command
        )

    def redis_client(self, name: str, *, auth: bool = True, **options: Any) -> redis.Redis:
        kwargs: dict[str, Any] = (
            {"username": ADMIN_USER, "password": self.secret("redis_admin_password")} if auth else {}
        )
        kwargs |= self.tls() | options
        return redis.Redis(self.ips[name], REDIS_PORT, socket_timeout=SOCKET_TIMEOUT_S, decode_responses=True, **kwargs)

    def sentinel_client(self, name: str, *, auth: bool = True, **options: Any) -> redis.Redis:
        kwargs: dict[str, Any] = {"password": self.secret("sentinel_password")} if auth else {}
        kwargs |= self.tls() | options
        return redis.Redis(
            self.ips[name], SENTINEL_PORT, socket_timeout=SOCKET_TIMEOUT_S, decode_responses=True, **kwargs
        )

    def metrics(self, name: str, port: int) -> str:
        url = f"http://{self.ips[name]}:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
        return body.decode()

    def journal(self, host: str, unit: str) -> str:
        result = self.host(host).run("journalctl --no-pager -o short-iso -n %s -u %s", str(JOURNAL_LINES), unit)
        return str(result.stdout or result.stderr)


@functools.cache
def _lab_from_env() -> Lab:
    name = os.environ["RHK_LAB_NAME"]
    state_dir = REPO / ".lab" / "labs" / name
    state = json.loads((state_dir / "state.json").read_text())
    ips = {host: info["ip"] for host, info in state["hosts"].items()}
    tls_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "tls" if os.environ.get("RHK_LAB_TLS") == "1" else None
    return Lab(
        name=name, state_dir=state_dir, ips=ips, control_dir=tempfile.mkdtemp(prefix="rhk-ssh-"), tls_dir=tls_dir
    )


@pytest.fixture(scope="session")
def lab() -> Lab:
    return _lab_from_env()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the multiplexed SSH masters of this session and remove their sockets."""
    if _lab_from_env.cache_info().currsize == 0:
        return
    control_dir = Path(_lab_from_env().control_dir)
    for sock in control_dir.iterdir():
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "lab"], capture_output=True, check=False)
        sock.unlink(missing_ok=True)
    control_dir.rmdir()


def run_playbook(playbook: Path, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """ansible-playbook on this scenario's lab, with Molecule's inventory and ansible.cfg; uncoloured."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    return subprocess.run(
        [
            shutil.which("ansible-playbook") or "ansible-playbook",
            *args,
            "-i",
            str(ephemeral / "inventory"),
            str(playbook),
        ],
        env={**os.environ, "ANSIBLE_CONFIG": str(ephemeral / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"},
        # Never the test runner's stdin: Ansible refuses one a previous run left non-blocking.
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def wait_for(check: Callable[[], T], timeout_s: float = SETTLE_TIMEOUT_S, interval_s: float = 1.0) -> T:
    """Call ``check`` until it returns without AssertionError or a Redis error, at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (AssertionError, redis.RedisError):
            if time.monotonic() >= deadline:
                raise
        time.sleep(interval_s)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Append the journals of the units a failed test names (``units`` marker) from every host."""
    report = yield
    marker = item.get_closest_marker("units")
    if not (report.failed and call.when == "call" and marker is not None):
        return report
    try:
        lab = _lab_from_env()
    except (KeyError, OSError, ValueError) as exc:
        report.sections.append(("journal", f"cannot read the lab's state: {exc}"))
        return report
    # A parametrized test (name=host, unit=unit) shows only the journal it is about.
    params = getattr(item, "callspec", None)
    chosen = params.params if params is not None else {}
    units = [chosen["unit"]] if "unit" in chosen else list(marker.args)
    for unit in units:
        hosts = APP_HOSTS if unit.startswith("rq-worker") or unit in MONITORING_UNITS else REDIS_HOSTS
        for host in [chosen["name"]] if "name" in chosen else hosts:
            try:
                text = lab.journal(host, unit)
            except Exception as exc:
                text = f"(journal unavailable: {exc})"
            report.sections.append((f"journal {host} {unit}", text))
    return report


DRILL_DIR = "/var/lib/redis-ha-app/drill"
"""Where shared/drill_start.yml and drill_finish.yml leave what a drill did, on app1."""
WORKER_UNIT = "rq-worker@default"


@dataclasses.dataclass
class Drill:
    """What a drill did: the producer's acknowledgements, the worker's executions, the masters."""

    acknowledged: int
    finished: int
    lost: list[str]
    duplicated: list[str]
    write_gap_s: float
    producer_errors: int
    worker_pids: list[str]
    worker_restarts: int
    masters: dict[str, str]
    """Step of the drill -> address Sentinel named as master then, in order; the last is "final"."""

    @property
    def master_final(self) -> str:
        return self.masters["final"]

    def summary(self, scenario: str) -> str:
        masters = ",".join(self.masters.values())
        return (
            f"{scenario} drill: acknowledged={self.acknowledged} finished={self.finished} "
            f"lost={len(self.lost)} duplicated={len(self.duplicated)} "
            f"write_gap={self.write_gap_s:.2f}s producer_errors={self.producer_errors} "
            f"worker_restarts={self.worker_restarts} masters({','.join(self.masters)})={masters}"
        )


def _read_app_file(lab: Lab, path: str) -> str:
    f = lab.host("app1").file(path)
    assert f.exists, f"{path} is missing on app1: did side_effect.yml run?"
    return str(f.content_string)


def _props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def drill_summary(lab: Lab, scenario: str, directory: str = DRILL_DIR) -> Drill:
    """Read what the drill left on app1, print the summary line and keep it in Molecule's ephemeral dir."""
    acked = _read_app_file(lab, f"{directory}/acked.log").split()
    executions = Counter(e.job_id for e in parse_executions(_read_app_file(lab, f"{directory}/executions.log")))
    producer = json.loads(_read_app_file(lab, f"{directory}/producer.json"))
    before = _props(_read_app_file(lab, f"{directory}/worker.before"))
    after = _props(_read_app_file(lab, f"{directory}/worker.after"))
    now = _props(lab.host("app1").run("systemctl show -p MainPID -p NRestarts %s", WORKER_UNIT).stdout)
    drill = Drill(
        acknowledged=len(acked),
        finished=sum(1 for job in set(acked) if executions[job] > 0),
        lost=sorted(set(acked) - set(executions)),
        duplicated=sorted(job for job, count in executions.items() if count > 1),
        write_gap_s=float(producer["write_gap_s"]),
        producer_errors=int(producer["error_count"]),
        worker_pids=[before["MainPID"], after["MainPID"], now["MainPID"]],
        worker_restarts=int(now["NRestarts"]) - int(before["NRestarts"]),
        masters=_props(_read_app_file(lab, f"{directory}/masters")),
    )
    line = drill.summary(scenario)
    print(line)
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral:
        (Path(ephemeral) / f"{scenario}-summary.txt").write_text(line + "\n")
    return drill


def assert_owned(lab: Lab, name: str, spec: tuple[str, str, str, int]) -> None:
    """``spec`` = (path, owner, group, mode): the file exists on host ``name`` with exactly those."""
    path, owner, group, mode = spec
    f = lab.host(name).file(path)
    assert f.exists, f"{path} is missing on {name}"
    assert (f.user, f.group, f.mode) == (owner, group, mode), f"{path} on {name}: {f.user}:{f.group} {oct(f.mode)}"


def where_jobs_are(lab: Lab, job_ids: list[str], queue: str = "default") -> list[str]:
    """For a failure report: each job's status and timestamps, and every list or registry of
    ``queue`` on the master that holds it (or that its hash is gone)."""
    with lab.sentinel_client(REDIS_HOSTS[0]) as sentinel:
        host, _port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
    name = next(n for n, ip in lab.ips.items() if ip == host)
    lists = [f"rq:queue:{queue}", f"rq:queue:{queue}:intermediate"]
    registries = [f"rq:{kind}:{queue}" for kind in ("wip", "scheduled", "failed", "finished", "deferred", "canceled")]
    # Only text fields: a job hash also holds its pickled, compressed call, which does not decode.
    keep = ("status", "origin", "enqueued_at", "started_at", "ended_at", "worker_name")
    lines = []
    with lab.redis_client(name) as master:
        for job_id in job_ids:
            job = dict(zip(keep, master.hmget(f"rq:job:{job_id}", keep), strict=True))
            held = [key for key in lists if master.lpos(key, job_id) is not None]
            held += [key for key in registries if master.zscore(key, job_id) is not None]
            found = job if any(job.values()) else "no job hash"
            lines.append(f"{job_id}: {found} in {held or 'no list or registry'} on {name}, the master")
    # What the producer's client said about masters: which node it wrote to, and when it switched.
    said = lab.host("app1").run("journalctl -u drill-producer --no-pager -o short-precise | grep -i master | tail -40")
    return [*lines, "drill-producer on masters:", said.stdout]


def assert_no_acknowledged_job_lost(drill: Drill, lab: Lab | None = None) -> None:
    assert drill.acknowledged > 0, "the producer got no job acknowledged"
    if drill.lost and lab is not None:
        where = "\n".join(where_jobs_are(lab, drill.lost[:10]))
        raise AssertionError(f"{len(drill.lost)} acknowledged jobs never ran; where they are:\n{where}")
    assert drill.lost == [], f"{len(drill.lost)} acknowledged jobs never ran, e.g. {drill.lost[:5]}"
    assert drill.finished == drill.acknowledged


def assert_every_acknowledged_job_ran_once(drill: Drill, lab: Lab) -> None:
    """None lost, none run twice, no error surfaced to the producer."""
    assert_no_acknowledged_job_lost(drill, lab)
    assert drill.duplicated == []
    assert drill.producer_errors == 0


def assert_worker_rode_through(drill: Drill) -> None:
    assert len(set(drill.worker_pids)) == 1, f"worker MainPID before/after/now: {drill.worker_pids}"
    assert drill.worker_restarts == 0


def assert_master_moved(drill: Drill, before: str, after: str) -> None:
    """Sentinel named another master at step ``after`` than at step ``before``."""
    assert drill.masters[after] != drill.masters[before], f"masters by step: {drill.masters}"


def assert_cluster_agrees(lab: Lab, master: str) -> None:
    """Exactly ``master`` is master, every Sentinel names it, every other node replicates from it."""

    def agreed() -> None:
        roles = {name: lab.redis_client(name).execute_command("ROLE")[0] for name in REDIS_HOSTS}
        masters = [lab.ips[name] for name, role in roles.items() if role == "master"]
        assert masters == [master], f"ROLE says {roles}, Sentinel put {master}"
        for name in REDIS_HOSTS:
            addr = lab.sentinel_client(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            assert addr is not None and addr[0] == master, f"sentinel on {name} names {addr}"
            if roles[name] != "master":
                replication = lab.redis_client(name).info("replication")
                assert replication["master_host"] == master, f"{name} replicates from {replication['master_host']}"
                assert replication["master_link_status"] == "up", name

    wait_for(agreed)


def assert_worker_restarted_only_by_deploys(drill: Drill, steps: list[str]) -> None:
    """The worker never crashed; it was restarted only by a deploy that changed app1 (growing or
    shrinking the cluster changes the app's REDIS_SENTINELS, and the deploy restarts it gracefully)."""
    assert drill.worker_restarts == 0, "systemd restarted a crashed worker"
    if len(set(drill.worker_pids)) > 1:
        assert any(re.search(r"\bapp1 changed=[1-9]", line) for line in steps), (drill.worker_pids, steps)


@pytest.fixture(scope="module")
def steps() -> list[str]:
    """The step log of scenarios members and move (members-steps.txt), printed as it is read."""
    lines = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "members-steps.txt").read_text().splitlines()
    for line in lines:
        print(line)
    return lines


def members_now() -> list[str]:
    """The Redis hosts of the membership the last step of scenario members or move deployed."""
    inventory = yaml.safe_load((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "members.yml").read_text())
    return list(inventory["all"]["children"]["redis"]["hosts"])


def assert_step_views(steps: list[str], step: str, others: int) -> None:
    """Step ``step`` ran its playbooks with rc=0 and left every Sentinel listing ``others`` replicas
    and ``others`` Sentinels (every member but itself, none stale), able to authorize a failover."""
    runs = [line for line in steps if line.startswith(f"{step} (")]
    assert runs and all(" rc=0 " in line + " " for line in runs), runs
    views = [line for line in steps if line.startswith(f"{step} sentinels:")]
    assert len(views) == 1, views
    counts = {" ".join(part.split()[1:]) for part in views[0].split(": ", 1)[1].split(", ")}
    assert counts == {f"replicas={others} sentinels={others} ckquorum=OK"}, views[0]


def assert_members_agree(lab: Lab, names: list[str]) -> None:
    """Every member's Sentinel names the same master and lists exactly the other members."""
    addresses = {lab.ips[name] for name in names}

    def agreed() -> None:
        masters = {
            tuple(lab.sentinel_client(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME))
            for name in names
        }
        assert len(masters) == 1, masters
        master = next(iter(masters))[0]
        for name in names:
            with lab.sentinel_client(name) as sentinel:
                replicas = {r["ip"] for r in sentinel.sentinel_slaves(MASTER_NAME)}
                peers = {s["ip"] for s in sentinel.sentinel_sentinels(MASTER_NAME)}
            assert replicas == addresses - {master}, (name, replicas)
            assert peers == addresses - {lab.ips[name]}, (name, peers)

    wait_for(agreed)


def assert_replica_of(lab: Lab, address: str, master: str) -> None:
    """The node at ``address`` (a former master) is a replica of ``master`` with its link up."""
    name = next(host for host, ip in lab.ips.items() if ip == address)

    def replicates() -> None:
        replication = lab.redis_client(name).info("replication")
        assert replication["role"] == "slave", f"{name} ({address}) is {replication['role']}"
        assert replication["master_host"] == master, f"{name} replicates from {replication['master_host']}"
        assert replication["master_link_status"] == "up", name

    wait_for(replicates)
