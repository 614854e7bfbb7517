"""The kit's planned failover script (roles/redis_ha/files/failover.sh) on a real loopback cluster.

Its success path (writes paused, the old master a replica, writes refused with READONLY once
unpaused) is checked in tests/test_write_loss_harness.py, through the bench's ``planned_failover``.
Here: what it does when the failover cannot happen. The master must stay master and take writes
again at once, and the error must say what happened.
"""

from __future__ import annotations

import time

import pytest

from tests.support.cluster import LoopbackCluster
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
