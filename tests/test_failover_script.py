"""The kit's planned failover script (roles/redis_ha/files/failover.sh) on a real loopback cluster.

Its success path (writes paused, the old master a replica, writes refused with READONLY once
unpaused) is checked in tests/test_write_loss_harness.py, through the bench's ``planned_failover``.
Here: what it does when the failover cannot happen. The master must stay master and take writes
again at once, and the error must say what happened. And what it does to the master's replication
stream while writes wait.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.support.cluster import LoopbackCluster, parse_pairs
from tests.support.write_loss import run_failover_script


@pytest.mark.integration
def test_no_sentinel_answering_leaves_the_master_in_place_and_taking_writes(cluster: LoopbackCluster) -> None:
    old = cluster.master_addr()
    # Nothing listens on port 1: no Sentinel answers.
    proc = run_failover_script(cluster, sentinels="127.0.0.1:1")

    assert proc.returncode != 0
    assert proc.stdout.splitlines()[-1].startswith("error=no Sentinel answered")
    assert "writes were not paused" in proc.stdout.splitlines()[-1]
    assert cluster.master_addr() == old
    with cluster.redis_client(old, user="app", socket_timeout=2) as app:
        started = time.monotonic()
        app.set("written-after-the-refused-failover", 1)
        # Paused for 15 s had the script not unpaused it.
        assert time.monotonic() - started < 2


@pytest.mark.integration
def test_a_wrong_admin_password_changes_nothing_and_says_so(cluster: LoopbackCluster) -> None:
    old = cluster.master_addr()
    right = cluster.admin_password
    cluster.admin_password = "not-the-password"
    try:
        proc = run_failover_script(cluster)
    finally:
        cluster.admin_password = right

    assert proc.returncode != 0
    assert "writes were not paused" in proc.stdout.splitlines()[-1]
    assert "not-the-password" not in proc.stdout + proc.stderr
    assert cluster.master_addr() == old


@pytest.mark.integration
def test_while_writes_wait_the_master_sends_no_pings_and_its_stream_stands_still(cluster: LoopbackCluster) -> None:
    """Redis before 7.2 PINGs its replicas through a CLIENT PAUSE WRITE. One that landed between the
    promotion and REPLICAOF put the old master 14 bytes past the new one: it, and the replica that
    followed it, resynced in full (seen in CI). Here every replica hangs, so Sentinel refuses the
    failover and writes wait about 2 s (the script's INFO to each times out), a ping due every second.
    """
    master = next(node for node in cluster.nodes if node.addr == cluster.master_addr())
    replicas = [node for node in cluster.nodes if node is not master]
    with cluster.redis_client(master) as admin:
        admin.config_set("repl-ping-replica-period", 1)
    samples: list[tuple[bool, int]] = []
    stop = threading.Event()

    def sample() -> None:
        with cluster.redis_client(master, socket_timeout=2) as admin:
            while not stop.is_set() and len(samples) < 1000:
                period = admin.config_get("repl-ping-replica-period")["repl-ping-replica-period"]
                offset = int(admin.info("replication")["master_repl_offset"])
                # Held only if it was both before and after the offset was read.
                held = period == "3600" == admin.config_get("repl-ping-replica-period")["repl-ping-replica-period"]
                samples.append((held, offset))
                time.sleep(0.02)

    for replica in replicas:
        cluster.freeze(replica)
    try:
        # Sentinel refuses a failover only once it holds every replica down (-NOGOODSLAVE).
        deadline = time.monotonic() + cluster.down_after_ms / 1000 + 10
        down = False
        while not down and time.monotonic() < deadline:
            time.sleep(0.2)
            down = True
            for index in range(len(cluster.sentinels)):
                with cluster.sentinel_client(index) as sentinel:
                    views = sentinel.execute_command("SENTINEL", "REPLICAS", cluster.master_name)
                down = down and all("s_down" in parse_pairs(view)["flags"] for view in views)
        assert down, "the Sentinels did not mark the hung replicas down"
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc = run_failover_script(cluster)
        stop.set()
        sampler.join(timeout=10)
    finally:
        for replica in replicas:
            cluster.thaw(replica)

    assert proc.returncode != 0
    assert "refused the failover" in proc.stdout.splitlines()[-1]
    held = [offset for was_held, offset in samples if was_held]
    assert len(held) >= 10, f"pings were not held off while writes waited: {samples}"
    assert len(set(held)) == 1, f"the master's stream moved while writes waited: {held}"
    assert cluster.master_addr() == master.addr
    with cluster.redis_client(master) as admin:
        assert admin.config_get("repl-ping-replica-period") == {"repl-ping-replica-period": "1"}
