"""An ``HARedis`` that stays Sentinel-aware when RQ clones it.

RQ 3.0 rebuilds connections for its scheduler process and for ``WorkerPool`` workers as
``type(conn)(connection_pool=ConnectionPool(connection_class=pool.connection_class,
**pool.connection_kwargs))`` (see ``rq.connections.parse_connection``). A pool built that way
would lose Sentinel, so ``HARedis`` (and ``RQRedis``) recognise it and build a fresh
Sentinel-aware pool from the original pool's settings: every clone follows failover too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis

from redis_ha.client import HARedis
from redis_ha.config import Settings, load_settings


class RQRedis(HARedis):
    """``HARedis`` that RQ may clone with ``RQRedis(connection_pool=ConnectionPool(...))``.

    Every ``HARedis`` may be cloned that way now; this class remains for the connections RQ
    pickles and for code that names it.
    """

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
