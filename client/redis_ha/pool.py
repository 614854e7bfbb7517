"""Connections that always land on the current master (or a replica), and a pool that follows failover.

* Every new connection asks Sentinel where to go and confirms it with ``ROLE``.
* The pool keeps a *generation*: a failover bumps it, every pooled connection is dropped
  (in-use ones are interrupted, so a blocked BLMOVE wakes up), and a connection of an
  older generation is closed instead of being returned to the pool.
* After ``fork()`` the pool starts empty and the child gets its own watcher thread.
"""

from __future__ import annotations

import contextlib
import copyreg
import functools
import importlib.metadata
import logging
import os
import re
import socket
import threading
import time
from typing import Any, ClassVar, Literal

import redis
from redis.connection import Connection, ConnectionPool, SSLConnection
from redis.exceptions import NoPermissionError
from redis.utils import str_if_bytes

from redis_ha.config import DEFAULT_REDIS_PORT, Address, Settings, credentials, format_address
from redis_ha.errors import ConfigError, NotDurable, TopologyChanged, describe_error
from redis_ha.promotion import PromotionProbe, parse_info, replicas_in_role_reply
from redis_ha.sentinel import SentinelDirectory, no_retry, tls_kwargs
from redis_ha.watch import SwitchWatcher

try:
    from redis.driver_info import DriverInfo, resolve_driver_info
except ImportError:  # redis-py < 7.2 takes CLIENT SETINFO's LIB-NAME as one string (see client_setinfo)
    DriverInfo = None  # type: ignore[assignment,misc]
    resolve_driver_info = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

Role = Literal["master", "replica"]

CLIENT_KEYWORDS = frozenset({"single_connection_client", "event_dispatcher"})
"""Passed-through redis.Redis keywords that belong to the client, not to its pool."""

NOT_SENT_MARK = "redis_ha_not_sent"
"""Attribute set on an exception raised while connecting: the command never left this process."""
_NOREPLICAS = re.compile(r"(?:^|caused error: )NOREPLICAS\b")  # alone, or inside a pipeline's error


def master_is_alive(error: BaseException) -> bool:
    """The node answered as a working master that cannot confirm writes yet (a master just
    promoted, whose replicas have not attached): no replica can have taken over from it."""
    return isinstance(error, NotDurable) or (
        isinstance(error, redis.exceptions.ResponseError) and _NOREPLICAS.search(str(error)) is not None
    )


def was_sent(error: BaseException) -> bool:
    """False when the failure happened before the command reached a socket."""
    return not getattr(error, NOT_SENT_MARK, False)


STILL_DOWN_LOG_INTERVAL_S = 5.0


@functools.cache
def client_setinfo() -> dict[str, Any]:
    """The connection keyword that makes CLIENT SETINFO report ``redis-py(redis-ha_v<version>)``,
    worked out once per process.

    redis.Redis() does this for its own pools; without it every new connection reads the
    package metadata again (about 12 ms: most of an RQ work-horse's start-up). redis-py 7.2+
    builds the name from a ``DriverInfo``; older releases take the same string as ``lib_name``.
    """
    if DriverInfo is None:
        return {"lib_name": f"redis-py(redis-ha_v{_package_version()})"}
    return {"driver_info": DriverInfo().add_upstream_driver("redis-ha", _package_version())}


def _package_version() -> str:
    try:
        return importlib.metadata.version("redis-ha")
    except importlib.metadata.PackageNotFoundError:
        return "0"


UNRESOLVED_HOST = "master-not-resolved-yet.redis-ha.invalid"
"""``host`` in a pool's connection kwargs until its first connection found the master (.invalid never
resolves, so a plain client built from them too early fails with this name in its error)."""


class _HAConnectionType(type(Connection)):  # type: ignore[misc]  # ABCMeta
    """Metaclass of the connection class each ``HAConnectionPool`` makes for itself."""


def _connection_class_of_new_pool(settings: Settings, role: Role) -> type[HAConnection]:
    """What a pool's connection class becomes in another process: the class of a fresh pool."""
    return HAConnectionPool(settings, role).connection_class  # type: ignore[no-any-return]


def _reduce_connection_class(cls: type[HAConnection]) -> Any:
    pool = cls.__dict__.get("owner_pool")
    if pool is None:
        return cls.__qualname__  # HAConnection itself: pickled by name
    return (_connection_class_of_new_pool, (pool.settings, pool.role))


copyreg.pickle(_HAConnectionType, _reduce_connection_class)


class HAConnection(Connection, metaclass=_HAConnectionType):
    """A redis-py connection whose address comes from Sentinel at every (re)connect.

    Each ``HAConnectionPool`` uses a subclass of its own whose ``owner_pool`` names it, so the
    connection kwargs stay ones ``redis.Redis(**kwargs)`` accepts and a pool built elsewhere from
    ``(pool.connection_class, pool.connection_kwargs)`` still finds the master through Sentinel.
    """

    owner_pool: ClassVar[HAConnectionPool | None] = None

    def __init__(self, **kwargs: Any) -> None:
        pool = type(self).owner_pool
        if pool is None:
            raise TypeError("HAConnection is made by an HAConnectionPool; use its connection_class")
        self.ha_pool: HAConnectionPool = pool
        self.generation = -1
        self._handshaking = False
        self._expected_role: str | None = None
        super().__init__(**kwargs)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        try:
            self.generation = self.ha_pool.generation
            (self.host, self.port), self._expected_role = self.ha_pool.resolve()
            self._handshaking = True
            super().connect_check_health(check_health=check_health, retry_socket_connect=False)
        except Exception as error:
            # Whatever failed here failed before the caller's command was written.
            setattr(error, NOT_SENT_MARK, True)
            self.ha_pool.note_connect_failed((self.host, self.port))
            raise
        finally:
            self._handshaking = False

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health=check_health)
        addr = (self.host, self.port)
        if self._expected_role is not None:
            reply = self._verify_role(self._expected_role)
            if self._expected_role == "master":
                self._note_master(addr, reply)
        self.ha_pool.note_connected(addr)

    def _note_master(self, addr: Address, role_reply: Any) -> None:
        """Remember the master's replicas and, once per master, its replication id."""
        pool = self.ha_pool
        replid = None
        if pool.needs_lineage(addr):
            self.send_command("INFO", "replication", check_health=False)
            replid = parse_info(self.read_response()).get("master_replid")
        pool.note_master_details(addr, replicas_in_role_reply(role_reply), replid)

    def _verify_role(self, expected: str) -> Any:
        """Sentinel can lag behind a failover: trust the server's own ROLE, not the address."""
        self.send_command("ROLE", check_health=False)
        try:
            reply = self.read_response()
        except redis.ResponseError as exc:
            if isinstance(exc, NoPermissionError) or str(exc).startswith("NOPERM"):
                where = format_address((self.host, self.port))
                raise ConfigError(
                    [
                        f"user '{self.username or getattr(self.credential_provider, 'username', '') or 'default'}' "
                        f"may not run ROLE on {where}; "
                        "grant it +role (redis_ha confirms the role of every new connection)"
                    ]
                ) from exc
            raise
        role = str_if_bytes(reply[0])
        if role != expected:
            raise TopologyChanged(
                f"{format_address((self.host, self.port))} answered ROLE {role}, not {expected}: failover under way"
            )
        return reply

    def set_read_timeout(self, seconds: float | None) -> None:
        """Let one blocking command wait longer than the socket timeout (None: as long as it blocks)."""
        if self._sock is not None:
            self._sock.settimeout(seconds)

    def restore_read_timeout(self) -> None:
        if self._sock is not None:
            self._sock.settimeout(self.socket_timeout)

    def interrupt(self) -> None:
        """Wake a thread blocked on this connection; that thread cleans up in its own time."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class HASSLConnection(HAConnection, SSLConnection):
    """The same, over TLS."""


class HAConnectionPool(ConnectionPool):
    """A pool of HAConnections for one role of one Sentinel-monitored master."""

    def __init__(self, settings: Settings, role: Role = "master", directory: SentinelDirectory | None = None) -> None:
        self.settings = settings
        self.role: Role = role
        self.directory = directory or (SentinelDirectory(settings) if settings.uses_sentinel else None)
        self.generation = 0
        self.switch_epoch = 0
        self._changed = threading.Condition()
        self._watcher: SwitchWatcher | None = None
        self._watcher_pid = 0
        self._current: Address | None = None
        self._replica_turn = 0
        # The current master's replication id and replicas, to recognise a promoted replica early.
        self._lineage: tuple[Address, str] | None = None
        self._replicas_of_current: list[Address] = []
        self._promotion = PromotionProbe(settings)
        self._takeover: tuple[Address, Address] | None = None  # (lost master, replica that took over)
        self._inherited_master: Address | None = None
        self._trouble_since: float | None = None
        self._master_answered = False  # the last failure was the master refusing writes, alive
        self._trouble_logged_at = 0.0
        s = settings
        # redis.Redis keywords passed through (see config.PASSED_REDIS_KEYWORDS), minus the client's own.
        extra = {k: v for k, v in s.extra.items() if k not in CLIENT_KEYWORDS}
        # CLIENT SETINFO's library name: redis-ha's, unless the caller names its own.
        setinfo: dict[str, Any] = client_setinfo()
        if extra.keys() & {"driver_info", "lib_name", "lib_version"}:
            given: dict[str, Any] = {k: extra.pop(k) for k in ("driver_info", "lib_name", "lib_version") if k in extra}
            # redis-py 7.2+ folds them into one DriverInfo, as redis.Redis does; older take them as they are.
            setinfo = {"driver_info": resolve_driver_info(**given)} if DriverInfo is not None else given
        # A credential provider given by the caller replaces the user and password.
        who = {} if "credential_provider" in extra else credentials(s.username, s.password)
        base = HASSLConnection if s.tls else HAConnection
        connection_class = _HAConnectionType(base.__name__, (base,), {"owner_pool": self, "__module__": __name__})
        host, port = s.node or (UNRESOLVED_HOST, DEFAULT_REDIS_PORT)
        super().__init__(
            connection_class=connection_class,
            # What ``redis.Redis(**connection_kwargs)`` connects to: the node this pool last
            # reached, kept up to date (see ``_track``).
            host=host,
            port=port,
            **who,
            db=s.db,
            socket_timeout=s.socket_timeout_s,
            socket_connect_timeout=s.connect_timeout_s,
            socket_keepalive=True,
            health_check_interval=s.health_check_interval_s,
            client_name=s.client_name,
            **setinfo,
            retry=no_retry(),
            **tls_kwargs(s) | extra,
        )

    def reset(self) -> None:
        """redis-py calls this at start and in a forked child, whose pool starts empty."""
        super().reset()
        # A forked child (an RQ work-horse, say) first tries the master its parent last confirmed,
        # sparing a Sentinel round trip per child. ROLE still checks it; any failure asks Sentinel.
        self._inherited_master = self._current

    def disable_watcher(self) -> None:
        """This process will not subscribe to +switch-master: for short-lived children whose parent
        watches already. Commands still re-resolve the master through Sentinel on any error."""
        with self._changed:
            # os.getpid(), not self.pid: right after fork() redis-py has not noticed the new pid yet.
            self._watcher_pid = os.getpid()

    def __repr__(self) -> str:
        return f"<HAConnectionPool {self.role} of '{self.settings.master_name}' at {format_address(self._current)}>"

    def __reduce__(self) -> tuple[Any, ...]:
        # A pool crosses into a spawned process as its settings; the child builds its own sockets.
        return (HAConnectionPool, (self.settings, self.role))

    # --- where connections go -------------------------------------------------------------

    def resolve(self) -> tuple[Address, str | None]:
        """The address for a new connection and the ROLE it must answer (None: do not check)."""
        if self._watcher_pid != self.pid:  # first connection in this process (self.pid follows fork)
            self._ensure_watcher()
        if self.directory is None:
            assert self.settings.node is not None
            return self.settings.node, "master" if self.role == "master" else None
        if self.role == "master":
            inherited, self._inherited_master = self._inherited_master, None
            if inherited is not None:
                return inherited, "master"
            return self._master_address(), "master"
        replicas = self.directory.replica_addresses()
        if not replicas:
            # Reads may go to the master; better slower reads than none.
            return self.directory.master_address(), "master"
        self._replica_turn += 1
        return replicas[self._replica_turn % len(replicas)], "slave"

    def _master_address(self) -> Address:
        """Sentinel's answer, unless it still names a master we lost and a replica already took over."""
        assert self.directory is not None
        addr = self.directory.master_address()
        takeover = self._takeover
        if takeover is not None:
            if addr == takeover[0]:
                return takeover[1]  # Sentinel has not caught up yet
            self._takeover = None
        lineage = self._lineage
        # Not while the master answers NOREPLICAS (one just promoted, its replicas not attached
        # yet): probing its replicas then waits on every dead one among them for nothing.
        silent = self._trouble_since is not None and not self._master_answered
        if silent and lineage is not None and lineage[0] == addr:
            promoted = self._promotion.find(self._promotion_candidates, lineage[1])
            if promoted is not None:
                self._takeover = (addr, promoted)
                return promoted
        return addr

    def _promotion_candidates(self) -> list[Address]:
        """Replicas the master listed when we connected, plus any Sentinel has learned of since."""
        assert self.directory is not None
        known = self._replicas_of_current
        return known + [a for a in self.directory.replica_addresses(healthy_only=False) if a not in known]

    def note_connect_failed(self, addr: Address) -> None:
        """A node we took for the new master failed us: go back to asking Sentinel only."""
        takeover = self._takeover
        if takeover is not None and takeover[1] == addr:
            self._takeover = None

    def needs_lineage(self, addr: Address) -> bool:
        return self._lineage is None or self._lineage[0] != addr

    def note_master_details(self, addr: Address, replicas: list[Address], replid: str | None) -> None:
        if replicas:
            self._replicas_of_current = replicas
        if replid:
            self._lineage = (addr, replid)

    @property
    def last_address(self) -> Address | None:
        """The node ``connection_kwargs`` name: the one this pool last reached (None before any)."""
        kwargs = self.connection_kwargs
        addr = (str(kwargs["host"]), int(kwargs["port"]))
        return None if addr[0] == UNRESOLVED_HOST else addr

    @last_address.setter
    def last_address(self, addr: Address) -> None:
        self._track(addr)

    def _track(self, addr: Address) -> None:
        """Keep ``connection_kwargs`` pointing at the node this pool last reached (keys exist: the
        dict never changes size while redis-py copies it in another thread)."""
        kwargs = self.connection_kwargs
        if (kwargs["host"], kwargs["port"]) != addr:
            kwargs["host"], kwargs["port"] = addr

    def note_connected(self, addr: Address) -> None:
        """Called by each new connection; an unseen master address means the topology moved."""
        self._track(addr)
        if self.role != "master" or addr == self._current:
            return
        previous, self._current = self._current, addr
        if previous is None:
            logger.info("Connected to master %s of '%s'.", format_address(addr), self.settings.master_name)
        else:
            logger.warning(
                "Master of '%s' is now %s (was %s).",
                self.settings.master_name,
                format_address(addr),
                format_address(previous),
            )
            self._bump(interrupt_in_use=False)

    @property
    def current_master(self) -> Address | None:
        return self._current

    # --- following failover ---------------------------------------------------------------

    def on_switch(self, old: Address, new: Address) -> None:
        """Sentinel announced a failover: drop every connection, interrupt blocked ones, wake waiters."""
        if self.role == "master" and new == self._current:
            return
        logger.warning(
            "Failover seen: master of '%s' moved %s -> %s.",
            self.settings.master_name,
            format_address(old),
            format_address(new),
        )
        if self.role == "master":
            self._current = new
            self._track(new)
        self._bump(interrupt_in_use=True)

    def _bump(self, *, interrupt_in_use: bool) -> None:
        with self._lock:
            self.generation += 1
            for conn in self._available_connections:
                conn.disconnect()
            if interrupt_in_use:
                for conn in self._in_use_connections:
                    if isinstance(conn, HAConnection):
                        conn.interrupt()
        with self._changed:
            self.switch_epoch += 1
            self._changed.notify_all()

    def drop_idle(self) -> None:
        """After a failed command: idle sockets to the same place are likely dead too."""
        with self._lock:
            for conn in self._available_connections:
                conn.disconnect()

    def wait_for_switch(self, since_epoch: int, timeout_s: float) -> None:
        """Sleep up to ``timeout_s``, waking early if a failover is announced."""
        with self._changed:
            self._changed.wait_for(lambda: self.switch_epoch != since_epoch, timeout=timeout_s)

    # --- one log line per state change ----------------------------------------------------

    def note_trouble(self, error: BaseException, attempt: int) -> None:
        now = time.monotonic()
        self._master_answered = master_is_alive(error)
        with self._changed:
            first = self._trouble_since is None
            if first:
                self._trouble_since = self._trouble_logged_at = now
            elif now - self._trouble_logged_at >= STILL_DOWN_LOG_INTERVAL_S:
                self._trouble_logged_at = now
            else:
                return
            since = self._trouble_since
        target = f"master of '{self.settings.master_name}'" if self.role == "master" else "replicas"
        if first:
            logger.warning("Lost the %s (%s); reconnecting.", target, describe_error(error))
        else:
            logger.warning(
                "Still reconnecting to the %s after %.1fs, attempt %d (%s).",
                target,
                now - (since or now),
                attempt,
                describe_error(error),
            )

    def note_recovered(self) -> None:
        with self._changed:
            since, self._trouble_since = self._trouble_since, None
        if since is not None:
            logger.warning(
                "Reconnected to the %s %s after %.2fs.",
                self.role,
                format_address(self._current),
                time.monotonic() - since,
            )

    # --- pool plumbing --------------------------------------------------------------------

    def release(self, connection: Any) -> None:
        # A connection from before a failover may point at the old master: never reuse it.
        if connection.generation != self.generation:
            connection.disconnect()
        super().release(connection)

    def _ensure_watcher(self) -> None:
        with self._changed:
            if self._watcher_pid == self.pid:
                return
            self._watcher_pid = self.pid
            if self.directory is None:
                return
            self._watcher = SwitchWatcher(self.directory, self.on_switch)
            self._watcher.start()

    def close(self) -> None:
        if self._watcher is not None and self._watcher_pid == os.getpid():
            self._watcher.stop()
        self._watcher = None
        self._watcher_pid = 0
        if self.directory is not None:
            self.directory.close()
        self._promotion.close()
        super().close()
