"""Scenario tlsswitch: TLS switched on for a running cluster and off again (make tls-switch) while
a durable producer and the systemd RQ worker run on app1.

Prints the jobs' summary line and what each step changed on each host. The cluster ends where it
began, in plain text on 6379/26379, with nothing left of the TLS ports.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.molecule.conftest import (
    MASTER_NAME,
    REDIS_HOSTS,
    WORKER_UNIT,
    Drill,
    Lab,
    assert_every_acknowledged_job_ran_once,
    assert_worker_restarted_only_by_deploys,
    drill_summary,
)

pytestmark = pytest.mark.lab

RECAP = re.compile(r"(\S+) changed=(\d+)")


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "tlsswitch", "/var/lib/redis-ha-app/drill-tlsswitch")


def _step(steps: list[str], name: str) -> dict[str, int]:
    """What the step's playbook changed on each host; it must have succeeded."""
    lines = [line for line in steps if line.startswith(f"{name} (")]
    assert len(lines) == 1, steps
    assert "rc=0" in lines[0], lines[0]
    return {host: int(changed) for host, changed in RECAP.findall(lines[0])}


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_no_acknowledged_job_was_lost_or_run_twice_and_no_error_surfaced(lab: Lab, drill: Drill) -> None:
    assert_every_acknowledged_job_ran_once(drill, lab)


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_never_crashed_and_was_restarted_only_by_the_switch(drill: Drill, steps: list[str]) -> None:
    assert_worker_restarted_only_by_deploys(drill, steps)


def test_each_switch_changed_the_cluster_and_what_followed_changed_nothing(steps: list[str]) -> None:
    for switch in ("tls-on", "tls-off"):
        changed = _step(steps, switch)
        assert all(changed[host] > 0 for host in (*REDIS_HOSTS, "app1")), changed
    for quiet in ("tls-on-again", "deploy-on", "deploy-off"):
        assert set(_step(steps, quiet).values()) == {0}, quiet


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_every_node_serves_plain_text_on_the_first_ports_only_again(lab: Lab, name: str) -> None:
    host = lab.host(name)
    listening = host.check_output("ss -Hltn | awk '{print $4}'").split()
    for port in ("6380", "26380"):
        assert not any(address.endswith(f":{port}") for address in listening), (port, listening)
    config = lab.redis_client(name).config_get("port", "tls-port", "tls-replication", "replica-announce-port")
    assert config == {"port": "6379", "tls-port": "0", "tls-replication": "no", "replica-announce-port": "6379"}
    for path in ("/etc/redis/redis.conf", "/etc/redis/sentinel.conf"):
        text = host.file(path).content_string
        assert not re.search(r"(?m)^tls-(port|replication yes)", text), (path, text)


def test_every_sentinel_lists_the_others_and_the_replicas_at_the_first_ports(lab: Lab) -> None:
    for name in REDIS_HOSTS:
        sentinel = lab.sentinel_client(name)
        # redis-py types sentinel_sentinels as list | bool; here it is the list of dicts.
        replicas: list[dict[str, Any]] = sentinel.sentinel_slaves(MASTER_NAME)
        peers: list[dict[str, Any]] = sentinel.sentinel_sentinels(MASTER_NAME)  # type: ignore[assignment]
        shown = [(str(r["port"]), r["flags"]) for r in replicas], [(str(p["port"]), p["flags"]) for p in peers]
        assert shown == ([("6379", "slave")] * 2, [("26379", "sentinel")] * 2), (name, shown)
        assert str(sentinel.execute_command("SENTINEL", "CKQUORUM", MASTER_NAME)).startswith("OK"), name
