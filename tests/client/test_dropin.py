"""``connect()``'s client is a drop-in ``redis.Redis``: rebuilt, cloned, configured and pickled the way
redis-py, RQ and their users do it, against a real loopback cluster."""

from __future__ import annotations

import inspect
import multiprocessing
import pickle
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_ha
from redis.connection import ConnectionPool
from redis_ha.connection import HAConnection
from rq import Queue
from rq.connections import REDIS_RUNTIME_CONNECTION_KWARGS, get_connection_kwargs, parse_connection
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
    assert get_connection_kwargs(clone) == get_connection_kwargs(client)  # RQ's registry equality
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


# 2. Connection kwargs a plain redis.Redis accepts, in this process and in another.
#
# redis-py 8 itself puts runtime state (himport_registry, maint_notifications_*, orig_*) into every
# pool's connection_kwargs, which redis.Redis(**kwargs) refuses even for a stock client; RQ strips
# exactly those (rq.connections.get_connection_kwargs). Everything else must be a redis.Redis keyword.

REDIS_KEYWORDS = set(inspect.signature(redis.Redis.__init__).parameters)


def test_connection_kwargs_are_redis_keywords_as_a_stock_pool_s_are() -> None:
    client = redis_ha.connect(env={"REDIS_SENTINELS": "127.0.0.1:1"})
    ours = set(client.connection_pool.connection_kwargs) - set(REDIS_RUNTIME_CONNECTION_KWARGS)
    assert ours <= REDIS_KEYWORDS, ours - REDIS_KEYWORDS
    stock = set(redis.Redis().connection_pool.connection_kwargs) - set(REDIS_RUNTIME_CONNECTION_KWARGS)
    assert stock <= REDIS_KEYWORDS


def test_connection_kwargs_rebuild_a_plain_redis_at_the_current_master(cluster_module: LoopbackCluster) -> None:
    client = redis_ha.connect(env=cluster_module.env())
    client.set("plain", "kwargs")
    kwargs = get_connection_kwargs(client)
    with redis.Redis(**kwargs) as plain:
        assert plain.get("plain") == b"kwargs"
        assert plain.connection_pool.get_connection().port == cluster_module.master_addr()[1]
    # A pool of the client's connection class stays Sentinel-aware.
    connection_class = client.connection_pool.connection_class
    aware = redis.Redis(connection_pool=ConnectionPool(connection_class=connection_class, **kwargs))
    assert aware.get("plain") == b"kwargs"
    assert isinstance(aware.connection_pool.get_connection(), HAConnection)
    aware.close()
    # Pickled into a spawned process.
    copied = pickle.loads(pickle.dumps(kwargs))  # noqa: S301 — our own bytes
    assert redis.Redis(**copied).get("plain") == b"kwargs"
    with multiprocessing.get_context("spawn").Pool(1) as workers:
        assert workers.apply(_get_in_child, (kwargs, "plain")) == b"kwargs"
        got = workers.apply(_get_through_class_in_child, (connection_class, kwargs, "plain"))
    assert got == (b"kwargs", "HAConnection")


def test_connection_kwargs_with_a_password_file_rebuild_a_plain_redis(
    cluster_module: LoopbackCluster, tmp_path: Path
) -> None:
    password_file = tmp_path / "redis-password"
    password_file.write_text(cluster_module.app_password)
    password_file.chmod(0o600)
    env = {k: v for k, v in cluster_module.env().items() if k != "REDIS_PASSWORD"}
    client = redis_ha.connect(env=env | {"REDIS_PASSWORD_FILE": str(password_file)})
    client.set("from-file", "ok")
    kwargs = get_connection_kwargs(client)
    assert "credential_provider" in kwargs
    assert redis.Redis(**kwargs).get("from-file") == b"ok"
    assert redis.Redis(**pickle.loads(pickle.dumps(kwargs))).get("from-file") == b"ok"  # noqa: S301 — our own bytes


def test_connection_kwargs_follow_the_master_across_a_failover(cluster: LoopbackCluster) -> None:
    client = redis_ha.connect(env=cluster.env())
    client.set("follow", "1")
    old = cluster.master_addr()
    cluster.sentinel_failover()
    new = cluster.wait_for_master_change(old)
    deadline = time.monotonic() + LOOP_LIMIT_S
    while client.master_address != new and time.monotonic() < deadline:
        client.set("follow", "2")
        time.sleep(0.05)
    kwargs = get_connection_kwargs(client)
    assert (kwargs["host"], kwargs["port"]) == new
    assert redis.Redis(**kwargs).set("follow", "3") is True


# 3. redis.Redis's own options, through connect().


def test_connect_passes_redis_py_connection_options_through(cluster_module: LoopbackCluster) -> None:
    client = redis_ha.connect(
        env=cluster_module.env(),
        decode_responses=True,
        encoding="latin-1",
        encoding_errors="replace",
        client_name="dropin-test",
        lib_name="my-app",
        lib_version="1.2",
        health_check_interval=3,
        socket_timeout=2,
    )
    client.set("latin", "é")
    assert client.get("latin") == "é"
    assert client.client_info()["name"] == "dropin-test"
    kwargs = client.connection_pool.connection_kwargs
    # redis-py 7.2+ folds lib_name/lib_version into a DriverInfo; older ones keep lib_name.
    assert (kwargs["driver_info"].name if "driver_info" in kwargs else kwargs["lib_name"]) == "my-app"
    assert client.connection_pool.connection_kwargs["health_check_interval"] == 3
    assert client.settings.socket_timeout_s == 2
    resp3 = redis_ha.connect(env=cluster_module.env(), protocol=3, single_connection_client=True)
    assert resp3.connection is not None
    assert resp3.connection_pool.connection_kwargs["protocol"] == 3
    assert resp3.client_info()["resp"] == "3"
    resp3.close()


def test_every_redis_py_keyword_is_a_setting_passed_through_or_refused_with_a_reason() -> None:
    from redis_ha.config import ALIASED_REDIS_KEYWORDS, PASSED_REDIS_KEYWORDS, REFUSED_REDIS_KEYWORDS  # noqa: PLC0415

    placed = {"self", "db", "username", "password", "client_name"} | PASSED_REDIS_KEYWORDS
    placed |= set(ALIASED_REDIS_KEYWORDS) | set(REFUSED_REDIS_KEYWORDS)
    assert REDIS_KEYWORDS - placed == set()


def test_connect_refuses_options_that_cannot_work_with_sentinel_naming_each() -> None:
    env = {"REDIS_SENTINELS": "127.0.0.1:1"}
    with pytest.raises(redis_ha.ConfigError) as refused:
        redis_ha.connect(env=env, host="10.0.0.1", port=6380, unix_socket_path="/tmp/r.sock", retry=None)
    message = str(refused.value)
    for keyword in ("host", "port", "unix_socket_path", "retry"):
        assert f"keyword argument {keyword} " in message
    assert "Sentinel" in message
    settings = redis_ha.load_settings(env=env)
    with pytest.raises(redis_ha.ConfigError, match="connection_pool"):
        redis_ha.connect(settings=settings, connection_pool=ConnectionPool())


def test_a_resp3_client_rides_through_a_sentinel_failover(cluster: LoopbackCluster) -> None:
    client = redis_ha.connect(env=cluster.env(), protocol=3, decode_responses=True)
    client.hset("resp3", mapping={"a": "1"})
    assert client.hgetall("resp3") == {"a": "1"}
    old = cluster.master_addr()
    cluster.sentinel_failover()
    new = cluster.wait_for_master_change(old)
    written = 0
    deadline = time.monotonic() + LOOP_LIMIT_S
    while client.master_address != new and time.monotonic() < deadline:
        client.hset("resp3", "n", written)
        written += 1
        time.sleep(0.02)
    client.hset("resp3", "after", "yes")
    assert client.master_address == new
    assert client.hgetall("resp3")["after"] == "yes"
    assert client.client_info()["resp"] == "3"
