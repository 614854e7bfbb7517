"""pytest plugin loaded into RQ's and redis-py's own test suites by ``tests/compat/upstream.py``.

It replaces each suite's single connection helper, before the test modules import it, with one
that connects to the loopback cluster's master: as a plain ``redis.Redis`` (``stock``) or through
``redis_ha.connect()`` (``redis_ha``). Imports only redis, rq and redis_ha: the suite's own
``tests`` package shadows this repository's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import pytest
import redis

MODE = os.environ.get("REDIS_HA_UPSTREAM_MODE", "stock")
SUITE = os.environ.get("REDIS_HA_UPSTREAM_SUITE", "")


def _master() -> tuple[str, int]:
    host, _, port = os.environ["REDIS_HA_UPSTREAM_MASTER"].rpartition(":")
    return host, int(port)


def _admin() -> dict[str, str]:
    return {"username": os.environ["REDIS_HA_UPSTREAM_USER"], "password": os.environ["REDIS_HA_UPSTREAM_PASSWORD"]}


def connect(**kwargs: Any) -> redis.Redis:
    """One client for the suite: plain at the master (stock) or resolved through Sentinel (redis_ha)."""
    kwargs = {**_admin(), **kwargs}
    if MODE == "stock":
        host, port = _master()
        return redis.Redis(host=host, port=port, **kwargs)
    import redis_ha  # noqa: PLC0415 — only in this mode

    env = {
        "REDIS_SENTINELS": os.environ["REDIS_HA_UPSTREAM_SENTINELS"],
        "REDIS_MASTER_NAME": os.environ["REDIS_HA_UPSTREAM_MASTER_NAME"],
        "REDIS_SENTINEL_USERNAME": os.environ["REDIS_HA_UPSTREAM_SENTINEL_USER"],
        "REDIS_SENTINEL_PASSWORD": os.environ["REDIS_HA_UPSTREAM_SENTINEL_PASSWORD"],
        # A test that breaks connections on purpose then fails within pytest's timeout, instead of
        # being retried for the default 30 s.
        "REDIS_RETRY_DEADLINE": os.environ.get("REDIS_HA_UPSTREAM_RETRY_DEADLINE", "5"),
    }
    single = kwargs.pop("single_connection_client", False)
    client = redis_ha.connect(env=env, **kwargs)
    if not single:
        return client
    # As the suite's helper does (a pool, then .client()); the single-connection client owns the
    # pool, so closing it stops the pool's failover watcher too.
    single_client: redis.Redis = client.client()
    client.auto_close_connection_pool, single_client.auto_close_connection_pool = False, True
    return single_client


def _patch_rq() -> None:
    import tests  # noqa: PLC0415 — RQ's tests package (the suite's directory is the working directory)

    def find_empty_redis_database(ssl: bool = False) -> redis.Redis:
        for db in range(4, 17):
            client = connect(db=db)
            if client.dbsize() == 0:
                return client
            client.close()
        raise AssertionError("No empty Redis database found to run tests in.")

    def min_redis_version(ver: tuple[int, ...]) -> Any:
        import unittest  # noqa: PLC0415

        from rq.utils import get_version  # noqa: PLC0415

        with connect() as client:
            version = get_version(client)
        return unittest.skipIf(version < ver, f"Skip if Redis server < {'.'.join(map(str, ver))}")

    tests.find_empty_redis_database = find_empty_redis_database  # type: ignore[attr-defined]
    tests.min_redis_version = min_redis_version  # type: ignore[attr-defined]


def _patch_redis_py() -> None:
    conftest: Any = next(
        (m for name, m in sys.modules.items() if name.endswith("conftest") and hasattr(m, "_get_client")), None
    )
    if conftest is None:
        raise RuntimeError("redis-py's tests/conftest.py (with _get_client) was not loaded")
    original: Callable[..., Any] = conftest._get_client

    def _get_client(
        cls: Any,
        request: Any,
        single_connection_client: bool = True,
        flushdb: bool = True,
        from_url: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if from_url is not None or kwargs.get("ssl") or cls is not redis.Redis:
            return original(cls, request, single_connection_client, flushdb, from_url, **kwargs)
        protocol = request.config.getoption("--protocol") if request else None
        if protocol and kwargs.get("protocol") is None:
            kwargs["protocol"] = protocol
        client = connect(single_connection_client=single_connection_client, **kwargs)
        if request:

            def teardown() -> None:
                if flushdb:
                    try:
                        client.flushdb()
                    except redis.ConnectionError:
                        client.flushdb()
                client.close()
                client.connection_pool.disconnect()

            request.addfinalizer(teardown)
        return client

    conftest._get_client = _get_client


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    if MODE != "redis_ha" and SUITE == "redis-py":
        return  # stock redis-py: its own _get_client, given --redis-url
    if SUITE == "rq":
        _patch_rq()
    elif SUITE == "redis-py":
        _patch_redis_py()
