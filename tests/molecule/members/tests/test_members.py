"""Scenario members: grow (a fourth node), retire the master, replace a replica that died for good,
re-seed the master, while a durable producer and the systemd RQ worker run on app1.

Prints the jobs' summary line and, per step, what each playbook changed on each host and how
many replicas and Sentinels every Sentinel lists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from tests.molecule.conftest import (
    MASTER_NAME,
    WORKER_UNIT,
    Drill,
    Lab,
    assert_no_acknowledged_job_lost,
    drill_summary,
    wait_for,
)

pytestmark = pytest.mark.lab

EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
STEPS = ("grow", "retire-master", "replace", "reseed-master")


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "members", "/var/lib/redis-ha-app/drill-members")


@pytest.fixture(scope="module")
def steps() -> list[str]:
    lines = (EPHEMERAL / "members-steps.txt").read_text().splitlines()
    for line in lines:
        print(line)
    return lines


def members() -> list[str]:
    inventory = yaml.safe_load((EPHEMERAL / "members.yml").read_text())
    return list(inventory["all"]["children"]["redis"]["hosts"])


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_no_acknowledged_job_was_lost_or_run_twice_and_no_error_surfaced(lab: Lab, drill: Drill) -> None:
    assert_no_acknowledged_job_lost(drill, lab)
    assert drill.duplicated == []
    assert drill.producer_errors == 0


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_never_crashed_and_was_restarted_only_by_deploys_that_changed_its_settings(
    drill: Drill, steps: list[str]
) -> None:
    # Growing or shrinking the cluster changes the app's REDIS_SENTINELS, and the deploy restarts
    # the worker for it (gracefully: no job was lost or run twice, see above); nothing else may.
    assert drill.worker_restarts == 0, "systemd restarted a crashed worker"
    if len(set(drill.worker_pids)) > 1:
        assert any(re.search(r"\bapp1 changed=[1-9]", line) for line in steps), (drill.worker_pids, steps)


def test_every_step_succeeded_and_left_every_sentinel_listing_exactly_the_others(steps: list[str]) -> None:
    for step in STEPS:
        runs = [line for line in steps if line.startswith(f"{step} (")]
        assert runs and all(" rc=0 " in line + " " for line in runs), runs
        views = [line for line in steps if line.startswith(f"{step} sentinels:")]
        assert len(views) == 1, views
        expected = 3 if step == "grow" else 2
        counts = {" ".join(part.split()[1:]) for part in views[0].split(": ", 1)[1].split(", ")}
        assert counts == {f"replicas={expected} sentinels={expected}"}, views[0]


def test_retiring_the_master_failed_it_over_first(drill: Drill) -> None:
    assert drill.masters["retire-master"] != drill.masters["grow"], drill.masters


@pytest.mark.units("redis-server", "redis-sentinel")
def test_reseeding_the_master_failed_it_over_and_left_it_a_promotable_replica_of_the_new_one(
    lab: Lab, drill: Drill
) -> None:
    reseeded = next(name for name, ip in lab.ips.items() if ip == drill.masters["replace"])
    assert drill.masters["reseed-master"] != drill.masters["replace"], drill.masters
    host = lab.host(reseeded)
    aside = host.run("ls -d /var/lib/redis/untrusted-*").stdout.split()
    print(f"re-seeded {reseeded}: old files kept in {aside}")
    assert len(aside) == 1 and host.file(f"{aside[0]}/dump.rdb").exists
    with lab.redis_client(reseeded) as node:
        replication = node.info("replication")
        assert (replication["role"], replication["master_link_status"]) == ("slave", "up"), replication
        assert replication["master_host"] == drill.masters["reseed-master"]
        assert node.config_get("replica-priority") == {"replica-priority": "100"}


def test_growing_set_up_the_new_host(steps: list[str]) -> None:
    grow = next(line for line in steps if line.startswith("grow (site.yml)"))
    assert "redis4 changed=" in grow and "redis4 changed=0" not in grow, grow


@pytest.mark.units("redis-server", "redis-sentinel")
def test_the_members_agree_on_the_master_and_list_no_stale_node(lab: Lab) -> None:
    names = members()
    addresses = {lab.ips[name] for name in names}

    def agreed() -> None:
        masters = {
            tuple(lab.sentinel_client(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME))
            for name in names
        }
        assert len(masters) == 1, masters
        for name in names:
            with lab.sentinel_client(name) as sentinel:
                replicas = {r["ip"] for r in sentinel.sentinel_slaves(MASTER_NAME)}
                peers = {s["ip"] for s in sentinel.sentinel_sentinels(MASTER_NAME)}
            master = next(iter(masters))[0]
            assert replicas == addresses - {master}, (name, replicas)
            assert peers == addresses - {lab.ips[name]}, (name, peers)

    wait_for(agreed)
