"""The healthy/degraded/down decision, without sockets."""

from __future__ import annotations

import dataclasses

from redis_ha.health import Observation, ReplicaView, SentinelView, SyncProgress, decide, sync_progress

MASTER = ("10.0.0.1", 6379)


def sentinel(port: int, **changes: object) -> SentinelView:
    base = SentinelView(("10.0.0.9", port), reachable=True, master=MASTER, quorum_ok=True, quorum_reply="OK 3")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def healthy() -> Observation:
    return Observation(
        master_name="mymaster",
        sentinels=(sentinel(26379), sentinel(26380), sentinel(26381)),
        master=MASTER,
        replicas=(ReplicaView(("10.0.0.2", 6379), True, 0, 0), ReplicaView(("10.0.0.3", 6379), True, 1, 10)),
        known_replicas=2,
    )


def test_all_parts_answering_is_healthy_and_says_so() -> None:
    state, reason = decide(healthy())
    assert state == "healthy"
    assert "2 replica(s)" in reason and "3/3 sentinels" in reason


def test_no_sentinel_answering_is_down() -> None:
    obs = dataclasses.replace(healthy(), sentinels=(sentinel(26379, reachable=False),))
    assert decide(obs)[0] == "down"


def test_an_unreachable_master_is_down_with_the_error() -> None:
    state, reason = decide(dataclasses.replace(healthy(), master=None, master_error="timed out"))
    assert (state, "timed out" in reason) == ("down", True)


def test_a_missing_sentinel_or_quorum_is_degraded() -> None:
    one_down = dataclasses.replace(
        healthy(), sentinels=(sentinel(26379), sentinel(26380), sentinel(26381, reachable=False))
    )
    no_quorum = dataclasses.replace(
        healthy(), sentinels=(sentinel(26379, quorum_ok=False, quorum_reply="NOQUORUM 1 usable Sentinels"),)
    )
    assert decide(one_down) == ("degraded", "1 of 3 sentinels do not answer")
    assert "NOQUORUM" in decide(no_quorum)[1]


def test_a_lagging_or_missing_replica_is_degraded() -> None:
    lagging = dataclasses.replace(healthy(), replicas=(ReplicaView(("10.0.0.2", 6379), True, 30, 999),))
    state, reason = decide(lagging)
    assert state == "degraded"
    assert "1 of 2 replicas" in reason and "lags 30s" in reason
    alone = dataclasses.replace(healthy(), replicas=(), known_replicas=0)
    assert "no replica" in decide(alone)[1]


def test_a_down_entry_in_a_sentinel_table_is_degraded_and_named() -> None:
    entry = "replica 10.0.0.5:6379 (s_down)"
    stale = sentinel(26380, down_entries=(entry,))
    obs = dataclasses.replace(healthy(), sentinels=(sentinel(26379), stale, sentinel(26381)))
    state, reason = decide(obs)
    assert state == "degraded"
    assert reason.startswith("sentinel 10.0.0.9:26380 lists replica 10.0.0.5:6379 (s_down) as down")
    everywhere = dataclasses.replace(healthy(), sentinels=(stale, sentinel(26381, down_entries=(entry,))))
    assert (
        "sentinel 10.0.0.9:26380, 10.0.0.9:26381 list replica 10.0.0.5:6379 (s_down) as down" in decide(everywhere)[1]
    )


def test_a_failover_under_way_is_degraded() -> None:
    busy = sentinel(26379, failover_state="wait_promotion")
    state, reason = decide(dataclasses.replace(healthy(), sentinels=(busy, sentinel(26380), sentinel(26381))))
    assert (state, "failing the master over (wait_promotion)" in reason) == ("degraded", True)


def test_a_syncing_replica_says_how_far_along() -> None:
    syncing = ReplicaView(("10.0.0.3", 6379), False, None, None, sync=SyncProgress("sync", 512 * 1024, 2 * 1024**2))
    obs = dataclasses.replace(healthy(), replicas=(ReplicaView(("10.0.0.2", 6379), True, 0, 0), syncing))
    state, reason = decide(obs)
    assert state == "degraded"
    assert "replica 10.0.0.3:6379 is syncing from the master: 25% of 2.0 MiB" in reason


def test_sync_progress_reads_a_replicas_info() -> None:
    assert sync_progress({"loading": "0", "master_sync_in_progress": "0"}) is None
    diskless = sync_progress(
        {"master_sync_in_progress": "1", "master_sync_total_bytes": "-1", "master_sync_read_bytes": "2048"}
    )
    assert diskless == SyncProgress("sync", 2048, None)
    assert diskless.describe() == "syncing from the master: 2.0 KiB so far"
    assert SyncProgress("sync", 0, None).describe() == "syncing from the master: waiting for the master's snapshot"
    loading = sync_progress({"loading": "1", "loading_total_bytes": "1000", "loading_loaded_bytes": "500"})
    assert loading is not None and loading.describe() == "loading its data: 50% of 1000 B"
