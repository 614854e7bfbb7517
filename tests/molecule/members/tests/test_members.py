"""Scenario members: grow (a fourth node), retire the master, replace a replica that died for good,
re-seed the master, while a durable producer and the systemd RQ worker run on app1.

Prints the jobs' summary line and, per step, what each playbook changed on each host and how
many replicas and Sentinels every Sentinel lists.
"""

from __future__ import annotations

import pytest

from tests.molecule.conftest import (
    WORKER_UNIT,
    Drill,
    Lab,
    assert_every_acknowledged_job_ran_once,
    assert_members_agree,
    assert_step_views,
    assert_worker_restarted_only_by_deploys,
    drill_summary,
    members_now,
)

pytestmark = pytest.mark.lab

STEPS = ("grow", "retire-master", "replace", "reseed-master")


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "members", "/var/lib/redis-ha-app/drill-members")


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_no_acknowledged_job_was_lost_or_run_twice_and_no_error_surfaced(lab: Lab, drill: Drill) -> None:
    assert_every_acknowledged_job_ran_once(drill, lab)


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_never_crashed_and_was_restarted_only_by_deploys_that_changed_its_settings(
    drill: Drill, steps: list[str]
) -> None:
    assert_worker_restarted_only_by_deploys(drill, steps)


def test_every_step_succeeded_and_left_every_sentinel_listing_exactly_the_others(steps: list[str]) -> None:
    for step in STEPS:
        assert_step_views(steps, step, 3 if step == "grow" else 2)


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
    assert_members_agree(lab, members_now())
