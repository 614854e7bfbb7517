"""One connection: asks its pool where to go, confirms the node's ``ROLE``, and reports what it found.

A connection talks to its pool twice per (re)connect, data flowing one way each time:
``pool.route()`` says where to go and what to check (a ``Route``), and ``pool.arrived(route,
arrival)`` hands back what the node said (an ``Arrival``, or None when it could not be reached).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import redis
from redis.connection import Connection, SSLConnection
from redis.exceptions import NoPermissionError
from redis.utils import str_if_bytes

from redis_ha.config import Address, format_address
from redis_ha.errors import ConfigError, TopologyChanged
from redis_ha.judgement import mark_not_sent
from redis_ha.promotion import parse_info, replicas_in_role_reply

try:
    from redis.driver_info import DriverInfo, resolve_driver_info
except ImportError:  # redis-py < 7.2 takes CLIENT SETINFO's LIB-NAME as one string (see client_setinfo)
    DriverInfo = None  # type: ignore[assignment,misc]
    resolve_driver_info = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from redis_ha.pool import HAConnectionPool


@dataclass(frozen=True)
class Route:
    """Where a new connection goes and what it checks there."""

    address: Address
    expect_role: str | None
    """The ROLE the node must answer ("master" or "slave"); None: do not check (a single node)."""
    generation: int
    wants_lineage: bool = False
    """Read the master's replication id (INFO replication), to recognise a promoted replica later."""


@dataclass(frozen=True)
class Arrival:
    """What a node said while a connection was made to it."""

    role: str | None
    replicas: list[Address] = field(default_factory=list)
    replid: str | None = None


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


def setinfo_kwargs(given: dict[str, Any]) -> dict[str, Any]:
    """CLIENT SETINFO's library name: redis-ha's, unless the caller names its own (``given``:
    their ``driver_info``/``lib_name``/``lib_version``), which redis-py 7.2+ folds into one
    ``DriverInfo`` as ``redis.Redis`` does; older releases take them as they are."""
    if not given:
        return client_setinfo()
    return {"driver_info": resolve_driver_info(**given)} if DriverInfo is not None else given


def _package_version() -> str:
    try:
        return importlib.metadata.version("redis-ha")
    except importlib.metadata.PackageNotFoundError:
        return "0"


class HAConnectionType(type(Connection)):  # type: ignore[misc]  # ABCMeta
    """Metaclass of the connection class each ``HAConnectionPool`` makes for itself (pickled by
    ``redis_ha.pool`` as the class of a fresh pool)."""


class HAConnection(Connection, metaclass=HAConnectionType):
    """A redis-py connection whose address comes from its pool (Sentinel) at every (re)connect.

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
        self._route: Route | None = None
        self._arrival: Arrival | None = None
        super().__init__(**kwargs)

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        route = None
        try:
            route = self._route = self.ha_pool.route()
            self.generation = route.generation
            self.host, self.port = self.ha_pool.settings.dial_address(route.address)
            self._arrival = None
            super().connect_check_health(check_health=check_health, retry_socket_connect=False)
        except Exception as error:
            # Whatever failed here failed before the caller's command was written.
            mark_not_sent(error)
            if route is not None:
                self.ha_pool.arrived(route, None)
            raise
        finally:
            self._route = None
        assert route is not None
        self.ha_pool.arrived(route, self._arrival)

    def on_connect_check_health(self, check_health: bool = True) -> None:
        super().on_connect_check_health(check_health=check_health)
        route = self._route
        if route is None or route.expect_role is None:
            self._arrival = Arrival(role=None)
            return
        reply = self._verify_role(route.expect_role)
        if route.expect_role != "master":
            self._arrival = Arrival(role=route.expect_role)
            return
        replid = None
        if route.wants_lineage:
            self.send_command("INFO", "replication", check_health=False)
            replid = parse_info(self.read_response()).get("master_replid")
        self._arrival = Arrival("master", replicas_in_role_reply(reply), replid)

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
