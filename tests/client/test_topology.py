"""One Topology per process and service: the master chosen by a pure function, one watcher shared by all."""

from __future__ import annotations

import threading
import time

import redis_ha
from redis_ha.topology import MasterFacts, decide_master, probe_wanted

from tests.client.test_failover import wait_for
from tests.support.cluster import LoopbackCluster

OLD = ("10.0.0.1", 6379)
NEW = ("10.0.0.2", 6379)


def test_sentinels_answer_is_taken_while_the_master_answers() -> None:
    choice = decide_master(MasterFacts(sentinel=OLD, lineage_of=OLD, master_silent=False))
    assert choice.address == OLD and choice.takeover is None
    assert "Sentinel names 10.0.0.1:6379" in choice.reason
    assert not probe_wanted(MasterFacts(sentinel=OLD, lineage_of=OLD, master_silent=False))


def test_a_silent_master_whose_history_we_know_is_worth_a_probe_of_its_replicas() -> None:
    facts = MasterFacts(sentinel=OLD, lineage_of=OLD, master_silent=True)
    assert probe_wanted(facts)
    # Not for a master whose replication id we never read, nor once a takeover is known.
    assert not probe_wanted(MasterFacts(sentinel=OLD, lineage_of=NEW, master_silent=True))
    assert not probe_wanted(MasterFacts(sentinel=OLD, lineage_of=OLD, master_silent=True, takeover=(OLD, NEW)))


def test_a_replica_that_took_over_is_used_until_sentinel_names_another_master() -> None:
    found = decide_master(MasterFacts(sentinel=OLD, lineage_of=OLD, master_silent=True, promoted=NEW))
    assert found.address == NEW and found.takeover == (OLD, NEW)
    assert "10.0.0.2:6379 is now a master carrying its replication history" in found.reason
    # Sentinel has not caught up: the takeover stands, whatever the outage says now.
    still = decide_master(MasterFacts(sentinel=OLD, takeover=found.takeover))
    assert still.address == NEW and still.takeover == (OLD, NEW) and "which we lost" in still.reason
    # Sentinel names the new master: the takeover is forgotten.
    caught_up = decide_master(MasterFacts(sentinel=NEW, takeover=found.takeover))
    assert caught_up.address == NEW and caught_up.takeover is None


def test_clients_of_one_service_in_a_process_share_one_watcher_and_one_sentinel_directory(
    cluster: LoopbackCluster,
) -> None:
    sentinels = [cluster.sentinel_client(index) for index in range(len(cluster.sentinels))]

    def sentinel_connections() -> int:
        """The app user's connections only: the Sentinels' links to each other come and go on their own."""
        user = cluster.sentinel_app_user
        return sum(1 for sentinel in sentinels for link in sentinel.client_list() if link.get("user") == user)

    baseline_threads, baseline_connections = threading.active_count(), sentinel_connections()
    first = redis_ha.connect(env=cluster.env())
    first.ping()
    wait_for(lambda: sentinel_connections() == baseline_connections + 3, 10, "one directory and two watchers")
    # Another connect(), a replica reader and a copy with other retry settings: same service, same process.
    others = [
        redis_ha.connect(env=cluster.env()),
        redis_ha.connect(env=cluster.env(), role="replica"),
        redis_ha.connect(settings=first.settings, retry_deadline_s=1),
    ]
    for client in others:
        client.ping()
        assert client.ha_pool.topology is first.ha_pool.topology
    time.sleep(0.5)  # a watcher of their own would have subscribed by now
    assert threading.active_count() == baseline_threads + first.settings.watched_sentinels
    assert sentinel_connections() == baseline_connections + 3
    # The watcher stays while any client is open, and goes with the last one.
    first.close()
    assert others[0].set("still", "watched")
    for client in others:
        client.close()
    wait_for(lambda: threading.active_count() == baseline_threads, 2, "the watcher threads to end")
    wait_for(lambda: sentinel_connections() == baseline_connections, 2, "the sentinel connections to close")
    for sentinel in sentinels:
        sentinel.close()
