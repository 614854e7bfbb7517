"""What ``redis-ha status`` shows during day-2 operations, on a real loopback cluster with the
app's credentials: a replica in a full sync and how far along, and a Sentinel that still lists a
node that is gone."""

from __future__ import annotations

import time

from redis_ha.config import format_address, load_settings
from redis_ha.health import decide, observe

from tests.support.cluster import LoopbackCluster

DEADLINE_S = 20.0


def test_a_replica_in_full_sync_is_shown_with_its_progress(tmp_path) -> None:
    with LoopbackCluster(replicas=2, redis_config={"repl-diskless-sync": "no"}, base_dir=tmp_path) as cluster:
        settings = load_settings(env=cluster.env())
        with cluster.redis_client(cluster.master_node()) as admin:
            admin.mset({f"key:{i}": "x" * 100 for i in range(2000)})
            # 3 ms per key while writing the snapshot: a full sync that lasts about 6 s.
            admin.config_set("rdb-key-save-delay", "3000")
        replica = cluster.replica_nodes()[0]
        cluster.kill_node(replica)
        for snapshot in replica.dir.glob("*.rdb"):
            snapshot.unlink()  # no data and no replication id: it needs a full sync
        cluster.start_node(replica)
        deadline = time.monotonic() + DEADLINE_S
        shown = None
        while time.monotonic() < deadline:
            obs = observe(settings)
            shown = next((r for r in obs.replicas if r.address == replica.addr and r.sync is not None), None)
            if shown is not None:
                break
            time.sleep(0.2)
        assert shown is not None and shown.sync is not None, "the syncing replica was never shown as syncing"
        assert shown.sync.phase == "sync"
        state, reason = decide(obs)
        assert state == "degraded"
        assert f"replica {format_address(replica.addr)} is syncing from the master" in reason


def test_a_sentinel_that_lists_a_node_that_is_gone_is_named(tmp_path) -> None:
    with LoopbackCluster(replicas=2, base_dir=tmp_path) as cluster:
        settings = load_settings(env=cluster.env())
        assert decide(observe(settings))[0] == "healthy"
        gone = cluster.replica_nodes()[0]
        cluster.kill_node(gone)
        entry = f"replica {format_address(gone.addr)} (s_down"
        deadline = time.monotonic() + DEADLINE_S
        reason = ""
        while time.monotonic() < deadline and entry not in reason:
            time.sleep(0.3)
            reason = decide(observe(settings))[1]
        assert entry in reason, reason
        assert "a node that died or was retired without every Sentinel forgetting it" in reason
