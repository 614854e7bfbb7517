"""``connect()``'s client is a drop-in ``redis.Redis``: rebuilt, cloned, configured and pickled the way
redis-py, RQ and their users do it, against a real loopback cluster."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import redis_ha
from redis.connection import ConnectionPool
from rq import Queue
from rq.connections import parse_connection
from rq.scheduler import RQScheduler

from tests.support.cluster import LoopbackCluster

pytestmark = pytest.mark.integration

LOOP_LIMIT_S = 30.0


def _get_in_child(connection_kwargs: dict[str, Any], key: str) -> bytes | None:
    """Run in a spawned process: rebuild a plain client from pickled connection kwargs."""
    with redis.Redis(**connection_kwargs) as client:
        value: bytes | None = client.get(key)
        return value


def _get_through_class_in_child(connection_class: type[Any], connection_kwargs: dict[str, Any], key: str) -> Any:
    """Run in a spawned process: a pool of the pickled connection class still finds the master via Sentinel."""
    client = redis.Redis(connection_pool=ConnectionPool(connection_class=connection_class, **connection_kwargs))
    try:
        return client.get(key), type(client.connection_pool.get_connection()).__mro__[1].__name__
    finally:
        client.close()


# 1. Rebuilt the way redis-py and RQ rebuild clients.


def test_a_client_rebuilt_from_its_pool_or_as_a_single_connection_client_reaches_the_master(
    cluster_module: LoopbackCluster,
) -> None:
    client = redis_ha.connect(env=cluster_module.env())
    client.set("rebuilt", "yes")
    twin = type(client)(connection_pool=client.connection_pool)
    assert twin.get("rebuilt") == b"yes"
    assert twin.ha_pool is client.ha_pool
    single = client.client()
    assert single.connection is not None
    assert single.get("rebuilt") == b"yes"
    single.close()
    # RQ's scheduler and WorkerPool: type(conn)(connection_pool=ConnectionPool(class, **kwargs)).
    conn_class, pool_class, pool_kwargs = parse_connection(client)
    clone = conn_class(connection_pool=ConnectionPool(connection_class=pool_class, **pool_kwargs))
    assert isinstance(clone, redis_ha.HARedis)
    assert clone.ha_pool is not client.ha_pool
    assert clone.get("rebuilt") == b"yes"
    clone.close()


def test_rq_schedules_and_clones_connect_s_client_for_its_scheduler(cluster_module: LoopbackCluster) -> None:
    client = redis_ha.connect(env=cluster_module.env())
    queue = Queue("dropin-scheduled", connection=client)
    job = queue.enqueue_in(__import__("datetime").timedelta(seconds=60), print, "later")
    assert job.get_status() == "scheduled"
    scheduler = RQScheduler([queue], connection=client)
    assert isinstance(scheduler.connection, redis_ha.HARedis)
    assert scheduler.connection.ping() is True
