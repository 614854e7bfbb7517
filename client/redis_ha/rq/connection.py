"""An ``HARedis`` that stays Sentinel-aware when RQ clones it.

RQ 3.0 rebuilds connections for its scheduler process and for ``WorkerPool`` workers as
``type(conn)(connection_pool=ConnectionPool(connection_class=pool.connection_class,
**pool.connection_kwargs))`` (see ``rq.connections.parse_connection``). For a plain
``HARedis`` that call fails (its first argument is ``settings``), and a pool built that way
would lose Sentinel. ``RQRedis`` accepts exactly that call: it finds the original
``HAConnectionPool`` in the kwargs (every ``HAConnection`` carries ``ha_pool``) and builds a
fresh Sentinel-aware pool from its settings, so every clone follows failover too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import ConnectionPool

from redis_ha.client import HARedis
from redis_ha.config import Settings, load_settings
from redis_ha.pool import HAConnectionPool, Role


class RQRedis(HARedis):
    """``HARedis`` that RQ may clone with ``RQRedis(connection_pool=ConnectionPool(...))``."""

    def __init__(
        self,
        settings: Settings | None = None,
        role: Role = "master",
        connection_pool: ConnectionPool | None = None,
    ) -> None:
        if connection_pool is not None and not isinstance(connection_pool, HAConnectionPool):
            origin = connection_pool.connection_kwargs.get("ha_pool")
            if not isinstance(origin, HAConnectionPool):
                raise TypeError("RQRedis can only be cloned from a pool of HAConnections")
            settings, role = origin.settings, origin.role
            connection_pool.disconnect()  # it never connected; nothing should use it
            connection_pool = None
        if settings is None:
            settings = load_settings()
        super().__init__(settings, role=role, connection_pool=connection_pool)

    def __reduce__(self) -> tuple[Any, ...]:
        return (RQRedis, (self.settings, self.ha_role))


def rq_connection(settings: Settings | None = None, **overrides: Any) -> RQRedis:
    """The connection to hand to RQ objects: Sentinel-aware, and so are RQ's clones of it."""
    return RQRedis(settings if settings is not None else load_settings(**overrides))


def run_idempotent_script(connection: HARedis, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run a Lua script that the caller guarantees has the same effect when run twice.

    redis_ha does not repeat ``EVALSHA`` whose reply was lost (a script may do anything); a
    script written to be repeatable may be, so it runs here under the retry loop marked safe.
    """
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    execute = redis.Redis.execute_command  # the plain one: the retry loop below is the only one

    def attempt() -> Any:
        try:
            return execute(connection, "EVALSHA", sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return execute(connection, "EVAL", source, len(keys), *keys, *args)

    return connection.retry_loop.run(attempt, [("EVALSHA",)], safe=True)
