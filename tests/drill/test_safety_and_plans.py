"""Whether a drill may start, which node it acts on, and when it counts the cluster as recovered."""

from __future__ import annotations

from typing import Any

import pytest
from redis_ha.drill import kinds, safety
from redis_ha.drill.hosts import alert_receiver_url_from, hosts_by_address, parse_env_file, prometheus_url_from
from redis_ha.health import Observation, ReplicaView, SentinelView

M, R1, R2 = ("10.0.0.1", 6379), ("10.0.0.2", 6379), ("10.0.0.3", 6379)
SENTINELS = tuple(SentinelView((f"10.0.0.{i}", 26379), True, M, True, "OK") for i in (1, 2, 3))


def obs(master=M, replicas=(R1, R2), online=True) -> Observation:
    return Observation(
        master_name="mymaster",
        sentinels=SENTINELS,
        master=master,
        replicas=tuple(ReplicaView(r, online, 0, 0) for r in replicas),
        known_replicas=len(replicas),
    )


def test_production_without_confirm_yes_is_refused() -> None:
    refusal = safety.refusal("production", None, "healthy", "fine")
    assert refusal is not None and "without confirmation" in refusal and "CONFIRM=yes" in refusal
    assert safety.refusal("production", "no", "healthy", "fine") is not None
    assert safety.refusal("production", "yes", "healthy", "fine") is None
    assert safety.refusal("staging", None, "healthy", "fine") is None


def test_an_unhealthy_cluster_is_refused_naming_the_reason() -> None:
    refusal = safety.refusal("staging", None, "degraded", "1 of 2 replicas are connected")
    assert refusal is not None
    assert refusal.startswith("refusing to start: the cluster is degraded: 1 of 2 replicas are connected.")


def test_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known kinds: kill-master, stop-master"):
        kinds.plan_for("unplug-datacenter")


def test_targets_master_replica_and_a_sentinel_off_the_masters_host() -> None:
    assert kinds.choose_target(kinds.plan_for("freeze-master"), obs())[0] == M
    assert kinds.choose_target(kinds.plan_for("restart-replica"), obs())[0] == R1
    assert kinds.choose_target(kinds.plan_for("kill-sentinel"), obs())[0] == ("10.0.0.2", 26379)
    assert kinds.choose_target(kinds.plan_for("rolling-restart"), obs())[0] is None
    target, why = kinds.choose_target(kinds.plan_for("restart-replica"), obs(online=False))
    assert target is None
    assert safety.target_refusal(kinds.plan_for("restart-replica"), False, why) == (
        "refusing to start: no replica to act on for restart-replica (no replica is connected)"
    )


def test_recovery_waits_for_the_old_master_to_be_a_connected_replica() -> None:
    plan = kinds.plan_for("kill-master")
    after = obs(master=R1, replicas=(R2,))
    assert kinds.recovery_problem(plan, M, after, "healthy", "") == (
        "the old master 10.0.0.1:6379 is not yet a connected replica of 10.0.0.2:6379"
    )
    assert kinds.recovery_problem(plan, M, obs(master=R1, replicas=(R2, M)), "healthy", "") is None
    assert kinds.recovery_problem(plan, M, after, "degraded", "1 of 2") == "the cluster is degraded: 1 of 2"


def test_the_deployed_env_file_and_the_inventory_are_read_without_running_anything() -> None:
    env = parse_env_file("# c\nREDIS_SENTINELS='10.0.0.1:26379,10.0.0.2:26379'\nREDIS_PASSWORD='s3cr=t'\n")
    assert env == {"REDIS_SENTINELS": "10.0.0.1:26379,10.0.0.2:26379", "REDIS_PASSWORD": "s3cr=t"}
    inventory: dict[str, Any] = {
        "_meta": {"hostvars": {"r1": {"ansible_host": "10.0.0.1"}, "mon": {"ansible_host": "10.0.0.9"}}},
        "redis": {"hosts": ["r1"]},
        "sentinel": {"hosts": ["r1"]},
        "monitoring": {"hosts": ["mon"]},
    }
    assert hosts_by_address(inventory) == {"10.0.0.1": "r1"}
    assert prometheus_url_from(inventory) == ("http://10.0.0.9:9090", "Prometheus on mon")
    url, why = prometheus_url_from({"_meta": {"hostvars": {}}})
    assert url is None and why.startswith("no monitoring host configured")
    url, why = alert_receiver_url_from(inventory)
    assert url is None and "set drill_alert_receiver_url on the monitoring host" in why
    inventory["_meta"]["hostvars"]["mon"]["drill_alert_receiver_url"] = "http://10.0.0.9:9199/"
    assert alert_receiver_url_from(inventory) == ("http://10.0.0.9:9199/", "drill_alert_receiver_url of mon")
