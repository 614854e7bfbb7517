"""Scenario failover: what the drill in side_effect.yml did to the app's jobs, and to the cluster.

Runs after the drill and after a second deploy that changed nothing (Molecule's idempotence).
Prints one summary line: acknowledged / finished / lost / duplicated, write gap, worker restarts,
and the master before the kill, after Sentinel failed the killed one over, and at the end.
"""

from __future__ import annotations

import re

import pytest

from tests.molecule.conftest import (
    MASTER_NAME,
    REDIS_HOSTS,
    REPO,
    WORKER_UNIT,
    Drill,
    Lab,
    assert_cluster_agrees,
    assert_master_moved,
    assert_no_acknowledged_job_lost,
    assert_replica_of,
    assert_worker_rode_through,
    drill_summary,
    run_playbook,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "failover")


@pytest.mark.units("redis-sentinel")
def test_sentinel_elected_a_new_master_after_the_kill(drill: Drill) -> None:
    assert_master_moved(drill, "before", "after_kill")


@pytest.mark.units("redis-sentinel")
def test_the_planned_failover_moved_the_master_again(drill: Drill) -> None:
    assert_master_moved(drill, "after_kill", "final")


@pytest.mark.units("redis-server", "redis-sentinel")
def test_the_killed_master_came_back_as_a_replica(lab: Lab, drill: Drill) -> None:
    # Unless the planned failover made it master again.
    if drill.masters["before"] != drill.master_final:
        assert_replica_of(lab, drill.masters["before"], drill.master_final)


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_no_acknowledged_job_is_lost(lab: Lab, drill: Drill) -> None:
    assert_no_acknowledged_job_lost(drill, lab)


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_rode_through_without_restarting(drill: Drill) -> None:
    assert_worker_rode_through(drill)


@pytest.mark.units("redis-server", "redis-sentinel")
def test_the_redeploy_left_the_master_where_sentinel_put_it(lab: Lab, drill: Drill) -> None:
    assert_cluster_agrees(lab, drill.master_final)


def test_make_status_shows_when_each_sentinel_may_fail_over_again(drill: Drill) -> None:
    """Both failovers of the drill are in the Sentinels' journals: `make status` names them."""
    status = run_playbook(REPO / "ansible" / "status.yml")
    assert status.returncode == 0, status.stdout[-3000:]
    print(status.stdout[status.stdout.find("PLAY [Show when") :])
    # The callback wraps long messages and doubles quotes: read them with that taken out.
    text = " ".join(status.stdout.replace("''", "'").split())
    gates = dict(re.findall(r"Sentinel (\w+): (.*?) \(host clock\)", text))
    assert sorted(gates) == sorted(REDIS_HOSTS), gates
    took_part = [gate for gate in gates.values() if re.match(r"it (tried a failover|voted in a failover)", gate)]
    assert took_part, f"no Sentinel's journal shows the drill's failovers: {gates}"
    assert f"master '{MASTER_NAME}': {drill.master_final}" in text
