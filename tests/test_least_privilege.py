"""An app's credentials (the roles' own ACL rules, on the loopback cluster) can use Redis and follow
failover, and can do nothing that steers Redis or Sentinel."""

from __future__ import annotations

from typing import Any

import redis
import redis_ha

from tests.support import privilege
from tests.support.cluster import HOST, LoopbackCluster


def app_clients(cluster: LoopbackCluster) -> tuple[redis.Redis, redis.Redis]:
    """Plain clients with nothing but what the app's .env holds (REDIS_* and REDIS_SENTINEL_*)."""
    env = cluster.env()
    master_host, master_port = cluster.master_addr()
    sentinel_host, sentinel_port = cluster.sentinel_addrs[0]
    on_redis = redis.Redis(
        master_host, master_port, username=env["REDIS_USERNAME"], password=env["REDIS_PASSWORD"], decode_responses=True
    )
    on_sentinel = redis.Redis(
        sentinel_host,
        sentinel_port,
        username=env["REDIS_SENTINEL_USERNAME"],
        password=env["REDIS_SENTINEL_PASSWORD"],
        decode_responses=True,
    )
    return on_redis, on_sentinel


def sentinel_tables(cluster: LoopbackCluster) -> list[tuple[str, str, str]]:
    """Per Sentinel: the master it monitors, how many other Sentinels and replicas it knows."""
    tables = []
    for index in range(len(cluster.sentinels)):
        with cluster.sentinel_client(index, decode_responses=True) as sentinel:
            (master,) = sentinel.sentinel_masters().values()
            tables.append((master["name"], str(master["num-other-sentinels"]), str(master["num-slaves"])))
    return tables


def test_the_app_credentials_can_take_none_of_the_forbidden_actions(cluster_module: LoopbackCluster) -> None:
    cluster = cluster_module
    before = sentinel_tables(cluster)
    on_redis, on_sentinel = app_clients(cluster)
    allowed = privilege.allowed_forbidden_actions(
        lambda: redis.Redis(connection_pool=on_redis.connection_pool),
        lambda: redis.Redis(connection_pool=on_sentinel.connection_pool),
    )
    assert allowed == [], "\n".join(allowed)
    assert privilege.forbidden_action_count() >= 28
    assert sentinel_tables(cluster) == before


def test_the_probe_sees_what_admin_credentials_may_do_and_never_publishes_a_hello(
    cluster_module: LoopbackCluster,
) -> None:
    """The probe is not vacuous: the admin users may do every one of those things, harmlessly; and
    no hello message but the real Sentinels' reaches the master while it runs."""
    cluster = cluster_module
    before = sentinel_tables(cluster)
    master = cluster.master_addr()
    runids = set()
    for index in range(len(cluster.sentinels)):
        with cluster.sentinel_client(index, decode_responses=True) as sentinel:
            runids.add(sentinel.execute_command("SENTINEL", "MYID"))
    with cluster.redis_client(master, protocol=2, decode_responses=True) as listener:
        hellos = listener.pubsub()
        hellos.subscribe(privilege.HELLO_CHANNEL)
        allowed = privilege.allowed_forbidden_actions(
            lambda: cluster.redis_client(master, protocol=2), lambda: cluster.sentinel_client(0, protocol=2)
        )
        senders: set[str] = set()
        for _ in range(1000):  # bounded: what arrived during the probe, then 2 s of the Sentinels' own hellos
            message = hellos.get_message(timeout=0.2)
            if message is None and len(senders) >= 1:
                break
            if message and message["type"] == "message":
                senders.add(message["data"].split(",")[2])
        hellos.close()
    assert len(allowed) >= privilege.forbidden_action_count() - 1, "\n".join(allowed)  # DEBUG is off on Redis
    assert senders and senders <= runids, f"hello messages from {senders - runids}, not a Sentinel"
    assert sentinel_tables(cluster) == before


def test_the_app_credentials_find_the_master_and_use_rq_channels(cluster_module: LoopbackCluster) -> None:
    cluster = cluster_module
    on_redis, on_sentinel = app_clients(cluster)
    reply: Any = on_sentinel.sentinel_get_master_addr_by_name(cluster.master_name)
    assert (reply[0], int(reply[1])) == cluster.master_addr()
    assert on_sentinel.sentinel_sentinels(cluster.master_name)
    assert on_sentinel.sentinel_slaves(cluster.master_name)
    assert str(on_sentinel.execute_command("SENTINEL", "CKQUORUM", cluster.master_name)).startswith("OK")
    events = on_sentinel.pubsub()
    events.subscribe("+switch-master")
    events.close()
    assert on_redis.execute_command("ROLE")[0] == "master"
    assert on_redis.publish("rq:pubsub:worker-1", "x") == 0
    on_redis.set("least-privilege:key", "1")
    assert on_redis.get("least-privilege:key") == "1"
    on_redis.delete("least-privilege:key")


def test_an_app_on_least_privilege_rides_through_a_sentinel_failover(cluster: LoopbackCluster) -> None:
    client = redis_ha.connect(env=cluster.env())
    try:
        client.set("before", "1")
        old = cluster.master_addr()
        with cluster.sentinel_client(0) as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", cluster.master_name)
        new = cluster.wait_for_master_change(old)
        for index in range(50):
            client.set(f"after:{index}", str(index))
        assert client.get("before") == b"1"
        assert client.execute_command("ROLE")[0] == b"master"
        assert new[0] == HOST
    finally:
        client.close()
