"""The bench's loss counting and planned failover (tests/support/write_loss.py) do what they say.

Checked with plain redis-py against a real loopback cluster, so a loss the bench prints can be
blamed on the client under test, not on the counting.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.support.cluster import LoopbackCluster
from tests.support.write_loss import SwitchCounter, delete_keys, lost_keys, planned_failover


@pytest.mark.integration
def test_lost_keys_names_exactly_the_acknowledged_keys_the_master_no_longer_holds(
    cluster_module: LoopbackCluster,
) -> None:
    keys = [f"loss-test:{n}" for n in range(1200)]  # more than one EXISTS batch
    with cluster_module.redis_client(cluster_module.master_node(), user="app") as master:
        for key in keys:
            master.set(key, 1)
        master.delete(keys[3], keys[4], keys[700], keys[1199])

        assert lost_keys(master, keys) == [keys[3], keys[4], keys[700], keys[1199]]

        delete_keys(master, keys)
        assert master.exists(*keys) == 0


def write_until_refused(client: redis.Redis, stop: threading.Event, acknowledged: list[int]) -> None:
    """SET a counter on the old master until ``stop`` or the demoted node refuses it (bounded),
    appending each value whose write was acknowledged."""
    for n in range(1, 100_000):
        if stop.is_set():
            return
        try:
            client.set("flowing", n)
        except redis.RedisError:
            return
        acknowledged.append(n)


@pytest.mark.integration
def test_planned_failover_moves_the_master_without_losing_a_write_acknowledged_before_it(
    cluster: LoopbackCluster,
) -> None:
    old = cluster.master_addr()
    with cluster.redis_client(old, user="app") as writer:
        writer.set("before-the-failover", 1)

    with SwitchCounter(cluster) as switches, cluster.redis_client(old, user="app") as busy:
        # Writes keep coming until the script pauses them, so the old master's stream moves
        # while Sentinel starts the failover.
        stop, acknowledged = threading.Event(), [0]
        flow = threading.Thread(target=write_until_refused, args=(busy, stop, acknowledged), daemon=True)
        flow.start()
        try:
            done = planned_failover(cluster)
        finally:
            stop.set()
            flow.join(5)
        new = done.new_master
        cluster.wait_for_master_change(old)
        deadline = time.monotonic() + 5
        while not switches.switches and time.monotonic() < deadline:
            time.sleep(0.05)

    assert new != old
    # The replicas caught up with the paused master before Sentinel was asked, and the new
    # master holds every byte of the old master's stream.
    assert 0 <= done.caught_up_after_s < done.found_after_s <= done.unpaused_after_s
    assert done.lost_bytes == 0
    assert len(switches.switches) == 1
    assert switches.switches[0].split()[3:] == [new[0], str(new[1])]
    with cluster.redis_client(old) as demoted:
        assert demoted.execute_command("ROLE")[0] == "slave"
        # Unpaused: a write reaches it at once and is refused, as clients then see.
        with pytest.raises(redis.ReadOnlyError):
            demoted.set("after-the-failover", 1)
    with cluster.redis_client(new, user="app") as master:
        assert lost_keys(master, ["before-the-failover"]) == []
        # The last write the old master acknowledged is the value the new master holds.
        assert acknowledged[-1] > 0
        assert int(master.get("flowing") or 0) == acknowledged[-1]
