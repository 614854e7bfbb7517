"""The loopback cluster harness does what it says, checked with plain redis-py.

The client under test is deliberately not used here: these tests are what lets a failing client
test be blamed on the client rather than on the harness.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support import cluster as cluster_module_under_test
from tests.support.cluster import (
    ClusterError,
    LoopbackCluster,
    NodeState,
    ReplicaView,
    SentinelState,
    health_problem,
    pids_alive,
)

HOST = "127.0.0.1"


def anonymous(addr: tuple[str, int], **kwargs: Any) -> redis.Redis:
    """A client with no credentials that fails at once: redis-py retries an AuthenticationError
    (a ConnectionError) three times with backoff by default, almost 4 s per attempt here."""
    return redis.Redis(*addr, retry=Retry(NoBackoff(), 0), **kwargs)


def role(cluster: LoopbackCluster, addr: tuple[str, int]) -> list[Any]:
    with cluster.redis_client(addr) as client:
        reply: list[Any] = client.execute_command("ROLE")
    return reply


def replica_master(cluster: LoopbackCluster, addr: tuple[str, int]) -> tuple[str, int]:
    """The master a replica follows, by ROLE (asserting it is a connected replica)."""
    reply = role(cluster, addr)
    assert reply[0] == "slave", f"{addr} has ROLE {reply}"
    assert reply[3] == "connected", f"{addr} has ROLE {reply}"
    return (str(reply[1]), int(reply[2]))


# The health decision, without processes.


def healthy_state() -> tuple[list[NodeState], list[SentinelState]]:
    nodes = [
        NodeState(7000, role="master"),
        NodeState(7001, role="slave", master_port=7000, link_up=True),
    ]
    view = ReplicaView(flags=frozenset({"slave"}), link_ok=True, master_port=7000)
    sentinels = [
        SentinelState(
            port,
            master=(HOST, 7000),
            flags=frozenset({"master"}),
            other_sentinels=1,
            replicas={7001: view},
        )
        for port in (26379, 26380)
    ]
    return nodes, sentinels


def test_health_problem_is_none_for_a_healthy_cluster() -> None:
    nodes, sentinels = healthy_state()
    assert health_problem(nodes, sentinels, total_sentinels=2, total_replicas=1) is None


def test_health_problem_names_a_replica_whose_link_is_down() -> None:
    nodes, sentinels = healthy_state()
    nodes[1] = NodeState(7001, role="slave", master_port=7000, link_up=False)
    problem = health_problem(nodes, sentinels, total_sentinels=2, total_replicas=1)
    assert problem == "replica 127.0.0.1:7001 has master_link_status down"


def test_health_problem_names_two_masters() -> None:
    nodes, sentinels = healthy_state()
    nodes[1] = NodeState(7001, role="master")
    problem = health_problem(nodes, sentinels, total_sentinels=2, total_replicas=1)
    assert problem is not None
    assert "found 2 (7000, 7001)" in problem


def test_health_problem_names_a_sentinel_that_has_not_found_its_peers() -> None:
    nodes, sentinels = healthy_state()
    sentinels[1] = SentinelState(
        26380,
        master=(HOST, 7000),
        flags=frozenset({"master"}),
        other_sentinels=0,
        replicas=sentinels[0].replicas,
    )
    problem = health_problem(nodes, sentinels, total_sentinels=2, total_replicas=1)
    assert problem == "sentinel 127.0.0.1:26380 knows 0 other sentinels, expected 1"


# Real processes.


@pytest.mark.integration
def test_start_gives_one_master_with_linked_replicas_and_agreeing_sentinels(
    cluster: LoopbackCluster,
) -> None:
    master = cluster.master_addr()
    roles = {node.addr: role(cluster, node.addr)[0] for node in cluster.nodes}
    assert roles == {node.addr: "master" if node.addr == master else "slave" for node in cluster.nodes}
    for replica in cluster.replica_nodes():
        assert replica_master(cluster, replica.addr) == master
    for index in range(len(cluster.sentinels)):
        with cluster.sentinel_client(index) as sentinel:
            reply = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", cluster.master_name)
        assert (reply[0], int(reply[1])) == master
    env = cluster.env()
    assert env["REDIS_SENTINELS"] == ",".join(f"{h}:{p}" for h, p in cluster.sentinel_addrs)
    assert env["REDIS_MASTER_NAME"] == "mymaster"
    assert env["REDIS_USERNAME"] == cluster.app_user
    assert env["REDIS_PASSWORD"] == cluster.app_password
    # Apps get Sentinel's read-only user, never its admin password.
    assert env["REDIS_SENTINEL_USERNAME"] == cluster.sentinel_app_user
    assert env["REDIS_SENTINEL_PASSWORD"] == cluster.sentinel_app_password


@pytest.mark.integration
def test_kill_master_fails_over_and_the_old_master_rejoins_as_replica(
    cluster: LoopbackCluster,
) -> None:
    with cluster.redis_client(cluster.master_addr(), user="app") as client:
        client.set("before-failover", "kept")
        client.execute_command("WAIT", 2, 1000)

    old = cluster.kill_master()
    killed_at = time.monotonic()
    new = cluster.wait_for_master_change(old, timeout_s=10)

    assert new != old
    assert time.monotonic() - killed_at < 10
    assert role(cluster, new)[0] == "master"
    with cluster.redis_client(new, user="app") as client:
        assert client.get("before-failover") == "kept"

    cluster.start_node(cluster.node_for(old))
    cluster.wait_healthy(timeout_s=20)
    assert replica_master(cluster, old) == new


@pytest.mark.integration
def test_restarted_master_left_to_sentinel_is_converted_to_replica(
    cluster: LoopbackCluster,
) -> None:
    old = cluster.kill_master()
    new = cluster.wait_for_master_change(old, timeout_s=10)

    # Started from its own config the node claims to be a master; Sentinel must demote it, which
    # needs the sentinel ACL user, and it must then sync with masteruser/masterauth.
    cluster.start_node(cluster.node_for(old), as_replica=False)
    assert role(cluster, old)[0] == "master"
    cluster.wait_replica_of(cluster.node_for(old), new, timeout_s=40)
    assert replica_master(cluster, old) == new


@pytest.mark.integration
def test_sentinel_failover_moves_the_master(cluster: LoopbackCluster) -> None:
    old = cluster.sentinel_failover()
    new = cluster.wait_for_master_change(old, timeout_s=10)

    assert role(cluster, new)[0] == "master"
    # The old master is alive; Sentinel demotes it once it has reported master for 8 s.
    cluster.wait_replica_of(cluster.node_for(old), new, timeout_s=40)
    assert replica_master(cluster, old) == new


@pytest.mark.integration
def test_unauthenticated_clients_are_refused_by_redis_and_sentinel(
    cluster_module: LoopbackCluster,
) -> None:
    cluster = cluster_module
    with (
        anonymous(cluster.master_addr()) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()
    with (
        anonymous(cluster.sentinel_addrs[0]) as client,
        pytest.raises(redis.AuthenticationError),
    ):
        client.ping()
    with (
        anonymous(cluster.master_addr(), username="app", password="wrong") as wrong,
        pytest.raises(redis.AuthenticationError),
    ):
        wrong.ping()


@pytest.mark.integration
def test_app_user_may_do_what_an_rq_app_needs_but_nothing_dangerous(
    cluster_module: LoopbackCluster,
) -> None:
    cluster = cluster_module
    with cluster.redis_client(cluster.master_addr(), user="app") as app:
        app.set("app-key", "1")
        assert app.info("replication")["role"] == "master"
        assert app.execute_command("ROLE")[0] == "master"
        app.client_setname("rq:worker:test")
        # RQ finds its own address with CLIENT INFO; CLIENT LIST (every client's address) is not the app's.
        assert app.client_info()["name"] == "rq:worker:test"
        app.execute_command("WAIT", 0, 100)
        app.publish("rq:pubsub:test", "hello")
        app.delete("app-key")
        for refused in (("FLUSHALL",), ("CONFIG", "SET", "save", ""), ("KEYS", "*"), ("CLIENT", "LIST")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                app.execute_command(*refused)


@pytest.mark.integration
def test_freeze_makes_a_node_silent_until_thawed(cluster_module: LoopbackCluster) -> None:
    cluster = cluster_module
    replica = cluster.replica_nodes()[0]
    cluster.freeze(replica)
    try:
        with (
            cluster.redis_client(replica, socket_timeout=0.3) as client,
            pytest.raises(redis.TimeoutError),
        ):
            client.ping()
    finally:
        cluster.thaw(replica)
    with cluster.redis_client(replica) as client:
        assert client.ping()


@pytest.mark.integration
def test_sentinels_can_be_stopped_and_started_again(cluster: LoopbackCluster) -> None:
    master = cluster.master_addr()
    cluster.kill_sentinel(0)
    assert cluster.master_addr() == master  # the other two still answer
    cluster.stop_all_sentinels()
    with pytest.raises(ClusterError, match="no sentinel reports a master"):
        cluster.master_addr()

    for index in range(len(cluster.sentinels)):
        cluster.start_sentinel(index)
    cluster.wait_healthy(timeout_s=20)
    assert cluster.master_addr() == master


@pytest.mark.integration
def test_stop_leaves_none_of_the_started_processes_alive() -> None:
    cluster = LoopbackCluster(replicas=1).start()
    try:
        cluster.freeze(cluster.nodes[1])  # a stopped (SIGSTOP) process must go too
        old = cluster.kill_master()
        cluster.start_node(cluster.node_for(old))
        pids = cluster.started_pids
        assert len(pids) == 1 + 1 + 3 + 1  # master, replica, sentinels, the restart
        assert pids_alive(pids)
        directory = cluster.dir
    finally:
        cluster.stop()
    assert pids_alive(pids) == []
    assert directory is not None
    assert not directory.exists()


@pytest.mark.integration
def test_bare_cluster_without_auth_serves_anonymous_clients() -> None:
    with LoopbackCluster(replicas=1, sentinels=1, quorum=1, auth=False) as cluster:
        assert set(cluster.env()) == {"REDIS_SENTINELS", "REDIS_MASTER_NAME"}
        with anonymous(cluster.master_addr()) as client:
            assert client.ping()
        with anonymous(cluster.sentinel_addrs[0]) as client:
            assert client.ping()


@pytest.mark.integration
def test_a_port_taken_between_probe_and_bind_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = cluster_module_under_test._free_port
        offered = iter([taken])
        monkeypatch.setattr(cluster_module_under_test, "_free_port", lambda: next(offered, None) or real_free_port())
        with LoopbackCluster(replicas=0, sentinels=1, quorum=1) as cluster:
            assert cluster.nodes[0].port != taken
            assert "Address already in use" not in cluster.nodes[0].log_tail()


@pytest.mark.integration
def test_a_server_that_cannot_start_fails_with_its_log() -> None:
    broken = LoopbackCluster(replicas=0, sentinels=1, quorum=1, redis_config={"no-such": "x"})
    with pytest.raises(ClusterError, match="Bad directive or wrong number of arguments"):
        broken.start()
    assert not broken.started
