"""``connect()``: a redis-py ``Redis`` that finds the master through Sentinel and rides through failover.

It is a real ``redis.Redis`` subclass, so everything built on redis-py (RQ, locks,
pipelines, pub/sub) takes it as is. Only command execution is wrapped in the retry loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.client import Pipeline
from redis.connection import ConnectionPool

from redis_ha.commands import block_seconds, command_name, read_timeout_for
from redis_ha.config import Address, Settings, load_settings, with_overrides
from redis_ha.config import configured as _configured
from redis_ha.errors import NotDurable
from redis_ha.judgement import Verdict, classify
from redis_ha.pool import HAConnectionPool
from redis_ha.retry import RetryLoop
from redis_ha.topology import Role

logger = logging.getLogger(__name__)


class HARedis(redis.Redis):
    """A Redis client bound to the current master (or replicas) of one Sentinel-monitored service.

    Rebuilt the way redis-py and RQ rebuild clients, it stays Sentinel-aware:
    ``HARedis(connection_pool=client.connection_pool)`` shares the pool, ``client.client()`` gives a
    single-connection client on it, and ``HARedis(connection_pool=ConnectionPool(connection_class=
    pool.connection_class, **pool.connection_kwargs))`` (RQ's scheduler and ``WorkerPool``) builds a
    fresh Sentinel-aware pool from the settings its connection class carries. Without settings or a
    pool, settings come from the environment.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        role: Role = "master",
        connection_pool: ConnectionPool | None = None,
        *,
        single_connection_client: bool | None = None,
    ) -> None:
        last_seen: Address | None = None
        if connection_pool is not None and not isinstance(connection_pool, HAConnectionPool):
            origin = getattr(connection_pool.connection_class, "owner_pool", None)
            if not isinstance(origin, HAConnectionPool):
                raise TypeError(
                    f"{type(self).__name__} needs a pool of redis_ha connections; "
                    f"{connection_pool.connection_class.__name__} does not know its Sentinels"
                )
            # A clone of a pool (RQ's parse_connection): it never connected, and a fresh pool of
            # our own follows failover by itself.
            settings, role = settings or origin.settings, origin.role
            last_seen = origin.last_address
            connection_pool.disconnect()
            connection_pool = None
        if connection_pool is not None:
            settings, role = settings or connection_pool.settings, connection_pool.role
        if settings is None:
            settings = load_settings()
        self.settings = settings
        self.ha_role: Role = role  # not "role": that is the ROLE command's method
        pool = connection_pool or HAConnectionPool(settings, role)
        if connection_pool is None and last_seen is not None:
            # The clone's kwargs name the node its original last reached, as the original's do
            # (RQ compares registries by them); its connections still ask Sentinel.
            pool.last_address = last_seen
        if single_connection_client is None:
            single_connection_client = bool(settings.extra.get("single_connection_client", False))
        super().__init__(
            connection_pool=pool,
            single_connection_client=single_connection_client,
            event_dispatcher=settings.extra.get("event_dispatcher"),
        )
        # As redis.Redis does: close() (and ``with``) releases the pool when this client made it,
        # its failover watcher threads and Sentinel connections included.
        self.auto_close_connection_pool = connection_pool is None
        self.ha_pool = pool
        self.retry_loop = RetryLoop(pool)

    def __repr__(self) -> str:
        return f"<HARedis {self.ha_role}: {self.settings.describe()}>"

    def close(self) -> None:
        super().close()
        # redis-py 8.1+ closes a pool the client owns; older releases only disconnect it, which
        # would leave its failover watcher threads and Sentinel connections running. Closing twice is harmless.
        if self.auto_close_connection_pool:
            self.ha_pool.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled into a spawned process as its settings: the child opens its own sockets.
        return (HARedis, (self.settings, self.ha_role))

    def execute_command(self, *args: Any, **options: Any) -> Any:
        block_s = block_seconds(args)
        if block_s is None:
            run = super().execute_command
            return self.retry_loop.run(self._own_connection_reset_on_failure(lambda: run(*args, **options)), (args,))
        timeout = read_timeout_for(block_s, self.settings.socket_timeout_s)
        return self.retry_loop.run(lambda: self._execute_blocking(args, options, timeout), (args,))

    def _own_connection_reset_on_failure(self, operation: Callable[[], Any]) -> Callable[[], Any]:
        """A single-connection client keeps its connection: after a failure the next attempt must
        reconnect (asking Sentinel again) instead of reusing a socket to a demoted master."""
        if self.connection is None:
            return operation

        def attempt() -> Any:
            try:
                return operation()
            except redis.RedisError as error:
                if self.connection is not None and classify(error, self.ha_role) is not Verdict.OTHER:
                    self.connection.disconnect()
                raise

        return attempt

    def _execute_blocking(self, args: tuple[Any, ...], options: dict[str, Any], timeout: float | None) -> Any:
        """A blocking command (BLMOVE, WAIT, ...) on a connection whose read timeout covers its block time."""
        pool = self.ha_pool
        conn: Any = self.connection or pool.get_connection()
        try:
            conn.set_read_timeout(timeout)
            return self._send_command_parse_response(conn, args[0], *args, **options)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            raise
        finally:
            conn.restore_read_timeout()
            if conn is not self.connection:
                pool.release(conn)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> HAPipeline:
        return HAPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint, self.retry_loop)

    def durable_pipeline(self, replicas: int = 1, timeout_ms: int = 1000) -> HAPipeline:
        """A pipeline acknowledged only once ``replicas`` replicas confirm it (``WAIT``).

        Without confirmation it is retried (on the new master, after a failover) while every
        command in it may safely repeat; otherwise, or at the deadline, ``NotDurable`` is
        raised. Non-transactional: ``WAIT`` cannot block inside MULTI/EXEC.
        """
        if replicas < 1 or timeout_ms < 1:
            raise ValueError("durable_pipeline needs replicas >= 1 and timeout_ms >= 1")
        return HAPipeline(
            self.connection_pool, self.response_callbacks, False, None, self.retry_loop, durable=(replicas, timeout_ms)
        )

    def transaction(self, func: Callable[[Pipeline], None], *watches: Any, **kwargs: Any) -> Any:
        # WATCH state dies with a connection, so the whole function is re-run, which may
        # repeat its EXEC if the reply was lost: treat it as not safe to repeat.
        run = super().transaction
        return self.retry_loop.run(lambda: run(func, *watches, **kwargs), (("MULTI",),), safe=False)

    @property
    def master_address(self) -> tuple[str, int] | None:
        """The master this client last connected to (None before the first command)."""
        current: tuple[str, int] | None = self.ha_pool.current_master
        return current


class HAPipeline(Pipeline):
    """A pipeline (or MULTI/EXEC transaction) retried as a whole, when all its commands may repeat."""

    def __init__(
        self,
        connection_pool: Any,
        response_callbacks: Any,
        transaction: bool,
        shard_hint: Any,
        retry_loop: RetryLoop,
        *,
        durable: tuple[int, int] | None = None,
    ) -> None:
        self._read_timeout_extended = False  # before super(): __del__ may call reset()
        super().__init__(connection_pool, response_callbacks, transaction, shard_hint)
        self.retry_loop = retry_loop
        self.durable = durable

    def reset(self) -> None:  # type: ignore[override]  # Pipeline.reset, not the RESET command
        # Put a blocking pipeline's connection back to the normal timeout before it returns to the pool.
        conn: Any = self.connection
        if self._read_timeout_extended and conn is not None:
            conn.restore_read_timeout()
        self._read_timeout_extended = False
        super().reset()

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        if self.watching:
            # Keys are watched on one connection; redis-py raises WatchError if it breaks.
            # (Read before execute(), which resets the pipeline; `transaction` is Pipeline's flag.)
            in_transaction = self.explicit_transaction or bool(vars(self).get("transaction"))
            try:
                return super().execute(raise_on_error)
            except redis.ReadOnlyError as error:
                if not in_transaction:
                    raise
                # The node turned replica between WATCH and EXEC: its commands were refused when
                # queued and the server discarded the transaction (EXECABORT), so nothing ran. A
                # WATCH loop (RQ's, redis-py's transaction()) answers WatchError by starting over,
                # on a connection that the pool now routes to the new master.
                self.retry_loop.note_failure(error)
                raise redis.WatchError(f"transaction discarded, the node became a replica ({error})") from error
        stack = list(self.command_stack)
        scripts = set(self.scripts)
        explicit = self.explicit_transaction
        run = super().execute

        commands = [args for args, _options in stack]

        block = max((b for args in commands if (b := block_seconds(args)) is not None), default=None)
        if self.durable is not None:
            block = max(block or 0.0, self.durable[1] / 1000.0)

        def attempt() -> list[Any]:
            # execute() resets the pipeline, so every attempt starts from the same commands.
            self.command_stack = list(stack)
            self.scripts = set(scripts)
            self.explicit_transaction = explicit
            if block is not None:
                conn: Any = self.connection_pool.get_connection()
                self.connection = conn
                conn.set_read_timeout(read_timeout_for(block, self.retry_loop.settings.socket_timeout_s))
                self._read_timeout_extended = True
            if self.durable is None:
                result: list[Any] = run(raise_on_error)
                return result
            replicas, timeout_ms = self.durable
            self.pipeline_execute_command("WAIT", replicas, timeout_ms)
            *result, confirmed = run(raise_on_error)
            if int(confirmed) < replicas:
                names = " ".join(command_name(args) for args in commands[:3])
                raise NotDurable(
                    f"{names} reached the master but only {confirmed} of {replicas} required "
                    f"replicas confirmed it within {timeout_ms} ms"
                )
            return result

        return self.retry_loop.run(attempt, commands)


def connect(
    url: str | None = None,
    *,
    role: Role = "master",
    settings: Settings | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> HARedis:
    """A client for the master (``role="master"``) or for reads from replicas (``role="replica"``).

    Settings come from the environment (``REDIS_SENTINELS`` etc.), then ``url``, then keyword
    overrides such as ``password=`` or ``retry_deadline_s=``, applied to ``settings`` when given.
    ``redis.Redis``'s own keywords work too: its names for settings (``socket_timeout``,
    ``ssl``...), and options passed through (``decode_responses``, ``protocol``, ``encoding``,
    ``client_name``, ``single_connection_client``...); those that cannot work with Sentinel
    (``host``, ``port``, ``unix_socket_path``, ``retry``...) are refused, each saying why.
    Raises ``ConfigError`` listing every problem. No network traffic happens until the first
    command (except with ``single_connection_client=True``, which connects at once).
    """
    if role not in ("master", "replica"):
        raise ValueError(f"role is '{role}'; expected 'master' or 'replica'")
    if settings is None:
        settings = load_settings(url, env=env, **overrides)
    elif overrides:
        settings = with_overrides(settings, **overrides)
    return HARedis(settings, role=role)


_warned_unconfigured_pid = 0


def configured(env: Mapping[str, str] | None = None) -> bool:
    """True when Redis is configured; otherwise logs one warning (per process) and returns False.

    Lets an app run with background jobs disabled in development instead of crashing.
    """
    global _warned_unconfigured_pid  # noqa: PLW0603 — one warning per process is the point
    if _configured(env):
        return True
    if _warned_unconfigured_pid != os.getpid():
        _warned_unconfigured_pid = os.getpid()
        logger.warning(
            "Redis is not configured (set REDIS_SENTINELS and REDIS_MASTER_NAME, or REDIS_URL); "
            "background jobs are disabled."
        )
    return False
