"""Every redis_exporter metric and label the rules and the dashboard use is served by a real
exporter (Debian's prometheus-redis-exporter 1.45) in front of a real master, replica and
Sentinel, with the exporter ACL user and flags the kit deploys."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.ansible.conftest import ROLES
from tests.monitoring.dashboard import load, queries
from tests.monitoring.promql import EXPORTER_METRICS, metric_names
from tests.support.cluster import LoopbackCluster, _free_port

EXPORTER = "prometheus-redis-exporter"
START_TIMEOUT_S = 15.0
# {metric: labels it must carry} where the rules or panels use those labels.
LABELS = {
    "redis_instance_info": {"role"},
    "redis_master_link_up": {"master_host", "master_port"},
    "redis_connected_slave_offset_bytes": {"slave_ip", "slave_port"},
    "redis_sentinel_master_status": {"master_name", "master_address", "master_status"},
    "redis_sentinel_master_ckquorum_status": {"master_name", "message"},
    "redis_sentinel_master_ok_sentinels": {"master_name"},
}

Samples = dict[str, list[dict[str, str]]]


def used_exporter_metrics(rendered: dict[str, str]) -> set[str]:
    rules = yaml.safe_load(rendered["prometheus-alerts.yml"])
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    exprs += [query.expr for query in queries(load())]
    return set().union(*map(metric_names, exprs)) & EXPORTER_METRICS


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return samples


@pytest.fixture(scope="module")
def exporters(cluster_module: LoopbackCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Samples]]:
    """Scrapes of three exporters (master, replica, Sentinel), started and stopped by their pid."""
    if shutil.which(EXPORTER) is None:
        pytest.fail(f"{EXPORTER} is not on PATH: install Debian's prometheus-redis-exporter (`make system-deps`)")
    cluster = cluster_module
    rules = yaml.safe_load((ROLES / "redis" / "defaults" / "main.yml").read_text())["redis_acl_exporter_rules"]
    exporter_password = "exporter-test-password-0123456789"
    master = cluster.master_node()
    replica = cluster.replica_nodes()[0]
    for node in (master, replica):
        with cluster.redis_client(node) as client:
            client.execute_command("ACL", "SETUSER", "exporter", "reset", "on", f">{exporter_password}", *rules.split())
    targets = [
        (master.addr[1], "exporter", exporter_password),
        (replica.addr[1], "exporter", exporter_password),
        # Sentinel's read-only app user, as the role's exporter logs in: its metrics need nothing more.
        (cluster.sentinels[0].addr[1], cluster.sentinel_app_user, cluster.sentinel_app_password),
    ]
    logs = tmp_path_factory.mktemp("exporters")
    processes: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for index, (redis_port, user, password) in enumerate(targets):
            listen = _free_port()
            # As the kit runs it (roles/redis_exporter): no CONFIG command, password not on the command line.
            args = [EXPORTER, f"-redis.addr=redis://127.0.0.1:{redis_port}", f"-web.listen-address=127.0.0.1:{listen}"]
            args += ["-config-command=-"] + ([f"-redis.user={user}"] if user else [])
            log = (logs / f"exporter-{index}.log").open("wb")
            env = {**os.environ, "REDIS_PASSWORD": password}
            processes.append((subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env), listen))
        yield [wait_for_scrape(process, port, logs) for process, port in processes]
    finally:
        for process, _ in processes:
            process.terminate()
        for process, _ in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_for_scrape(process: subprocess.Popen[bytes], port: int, logs: Path) -> Samples:
    """The first scrape in which the exporter reached its target (redis_up 1)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            samples = scrape(port)
        except OSError as error:
            last = str(error)
        else:
            if samples.get("redis_up") and samples.get("redis_instance_info"):
                return samples
            last = f"redis_up={samples.get('redis_up')}"
        time.sleep(0.2)
    output = "\n".join(path.read_text(errors="replace")[-2000:] for path in sorted(logs.glob("*.log")))
    pytest.fail(f"exporter on port {port} never reached its target ({last}); logs:\n{output}")


def test_every_exporter_metric_in_use_is_served(exporters: list[Samples], rendered: dict[str, str]) -> None:
    served = set().union(*exporters)
    used = used_exporter_metrics(rendered)
    assert used - served == set()
    # Guards the scanner itself: these are what the failover and quorum alerts hinge on.
    assert {"redis_instance_info", "redis_sentinel_master_status", "redis_sentinel_master_ok_sentinels"} <= used


def test_labels_the_rules_rely_on_are_there(exporters: list[Samples]) -> None:
    merged: Samples = {}
    for samples in exporters:
        for name, label_sets in samples.items():
            merged.setdefault(name, []).extend(label_sets)
    for name, labels in LABELS.items():
        assert merged.get(name), f"{name} is not served"
        assert all(labels <= set(label_set) for label_set in merged[name]), (name, merged[name])


def test_roles_and_sentinel_view_read_as_the_rules_expect(
    exporters: list[Samples], cluster_module: LoopbackCluster
) -> None:
    master, replica, sentinel = exporters
    assert [labels["role"] for labels in master["redis_instance_info"]] == ["master"]
    assert [labels["role"] for labels in replica["redis_instance_info"]] == ["slave"]
    host, port = cluster_module.master_addr()
    statuses = sentinel["redis_sentinel_master_status"]
    assert [(s["master_name"], s["master_address"], s["master_status"]) for s in statuses] == [
        ("mymaster", f"{host}:{port}", "ok")
    ]
    assert len(master["redis_connected_slave_offset_bytes"]) == cluster_module.num_replicas
