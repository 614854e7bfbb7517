"""Scenario move: from three Debian 12 / Redis 7.0 hosts to three Debian 13 / Valkey 8 hosts while a
durable producer and the systemd RQ worker run on app1 (side_effect.yml).

Prints the jobs' summary line and, per step, what each playbook changed on each host and how many
replicas and Sentinels every Sentinel lists.
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

OLD = ("old1", "old2", "old3")
NEW = ("new1", "new2", "new3")


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "move", "/var/lib/redis-ha-app/drill-move")


@pytest.mark.units(WORKER_UNIT, "valkey-server", "valkey-sentinel")
def test_no_acknowledged_job_was_lost_or_run_twice_and_no_error_surfaced(lab: Lab, drill: Drill) -> None:
    assert_every_acknowledged_job_ran_once(drill, lab)


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_never_crashed_and_was_restarted_only_by_deploys_that_changed_its_settings(
    drill: Drill, steps: list[str]
) -> None:
    assert_worker_restarted_only_by_deploys(drill, steps)


def test_every_step_succeeded_and_left_every_sentinel_listing_exactly_the_others(steps: list[str]) -> None:
    assert_step_views(steps, "add-new", 5)
    retired = [line.split(" ", 1)[0] for line in steps if line.startswith("retire-") and " sentinels:" in line]
    assert len(retired) == 3, steps
    for others, step in zip((4, 3, 2), retired, strict=True):
        assert_step_views(steps, step, others)


def test_the_new_hosts_joined_the_old_master_and_it_moved_over_only_when_it_was_retired(
    lab: Lab, drill: Drill, steps: list[str]
) -> None:
    old_ips, new_ips = {lab.ips[name] for name in OLD}, {lab.ips[name] for name in NEW}
    retired = [line.split(" ", 1)[0] for line in steps if line.startswith("retire-") and " sentinels:" in line]
    assert drill.masters["add-new"] in old_ips, drill.masters
    # The old master is retired last: until then it stays master; its retirement fails it over.
    assert retired[-1] == "retire-" + next(name for name in OLD if lab.ips[name] == drill.masters["add-new"])
    assert all(drill.masters[step] == drill.masters["add-new"] for step in retired[:-1]), drill.masters
    assert drill.masters[retired[-1]] in new_ips, drill.masters


@pytest.mark.units("valkey-server", "valkey-sentinel")
def test_the_cluster_left_is_the_valkey_hosts_agreeing_and_listing_no_old_host(lab: Lab) -> None:
    assert members_now() == list(NEW)
    assert_members_agree(lab, list(NEW))
    for name in NEW:
        with lab.redis_client(name) as node:
            server = node.info("server")
        assert server.get("server_name") == "valkey", (name, server.get("server_name"), server.get("redis_version"))
        print(
            f"{name}: valkey {server.get('valkey_version')}, role {lab.redis_client(name).execute_command('ROLE')[0]}"
        )


def test_the_old_hosts_run_no_redis_any_more(lab: Lab) -> None:
    for name in OLD:
        host = lab.host(name)
        for unit in ("redis-server", "redis-sentinel"):
            assert not host.service(unit).is_running, f"{unit} still runs on {name}"
            assert not host.service(unit).is_enabled, f"{unit} is still enabled on {name}"
