"""A pool of connections that follows failover: connections always land on the current master (or a replica).

* Where a new connection goes comes from this process's shared ``Topology`` (Sentinel, ROLE,
  the promotion probe); the pool only hands out ``Route``s and passes on what came back.
* The pool keeps a *generation*: when the master moves, every pooled connection is dropped
  (in-use ones are interrupted after a ``+switch-master``, so a blocked BLMOVE wakes up), and a
  connection of an older generation is closed instead of being returned to the pool.
* ``connection_kwargs`` name the node the pool last reached, so ``redis.Redis(**kwargs)`` works.
"""

from __future__ import annotations

import copyreg
from typing import Any

from redis.connection import ConnectionPool

from redis_ha.config import DEFAULT_REDIS_PORT, Address, Settings, credentials, format_address
from redis_ha.connection import Arrival, HAConnection, HAConnectionType, HASSLConnection, Route, setinfo_kwargs
from redis_ha.outage import Outage
from redis_ha.sentinel import no_retry, tls_kwargs
from redis_ha.topology import Role, Topology

CLIENT_KEYWORDS = frozenset({"single_connection_client", "event_dispatcher"})
"""Passed-through redis.Redis keywords that belong to the client, not to its pool."""

SETINFO_KEYWORDS = ("driver_info", "lib_name", "lib_version")

UNRESOLVED_HOST = "master-not-resolved-yet.redis-ha.invalid"
"""``host`` in a pool's connection kwargs until its first connection found the master (.invalid never
resolves, so a plain client built from them too early fails with this name in its error)."""


def _connection_class_of_new_pool(settings: Settings, role: Role) -> type[HAConnection]:
    """What a pool's connection class becomes in another process: the class of a fresh pool."""
    return HAConnectionPool(settings, role).connection_class  # type: ignore[no-any-return]


def _reduce_connection_class(cls: type[HAConnection]) -> Any:
    pool = cls.__dict__.get("owner_pool")
    if pool is None:
        return cls.__qualname__  # HAConnection itself: pickled by name
    return (_connection_class_of_new_pool, (pool.settings, pool.role))


copyreg.pickle(HAConnectionType, _reduce_connection_class)


class HAConnectionPool(ConnectionPool):
    """A pool of HAConnections for one role of one Sentinel-monitored master."""

    def __init__(self, settings: Settings, role: Role = "master") -> None:
        self.settings = settings
        self.role: Role = role
        self.generation = 0
        self._replica_turn = 0
        s = settings
        # redis.Redis keywords passed through (see config.PASSED_REDIS_KEYWORDS), minus the client's own.
        extra = {k: v for k, v in s.extra.items() if k not in CLIENT_KEYWORDS}
        setinfo = setinfo_kwargs({k: extra.pop(k) for k in SETINFO_KEYWORDS if k in extra})
        # A credential provider given by the caller replaces the user and password.
        who = {} if "credential_provider" in extra else credentials(s.username, s.password)
        base = HASSLConnection if s.tls else HAConnection
        connection_class = HAConnectionType(base.__name__, (base,), {"owner_pool": self, "__module__": __name__})
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
        self.topology = Topology.attach(self)

    def __repr__(self) -> str:
        return (
            f"<HAConnectionPool {self.role} of '{self.settings.master_name}' at {format_address(self.current_master)}>"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # A pool crosses into a spawned process as its settings; the child builds its own sockets.
        return (HAConnectionPool, (self.settings, self.role))

    # --- where connections go -------------------------------------------------------------

    def route(self) -> Route:
        """Where a new connection goes, and what it checks there."""
        topology = self.topology
        topology.ensure_watcher()
        directory = topology.directory
        if directory is None:
            assert self.settings.node is not None
            return Route(self.settings.node, "master" if self.role == "master" else None, self.generation)
        if self.role == "master":
            addr = topology.master_address()
            return Route(addr, "master", self.generation, topology.wants_lineage(addr))
        replicas = directory.replica_addresses()
        if not replicas:
            # Reads may go to the master; better slower reads than none.
            return Route(directory.master_address(), "master", self.generation)
        self._replica_turn += 1
        return Route(replicas[self._replica_turn % len(replicas)], "slave", self.generation)

    def arrived(self, route: Route, arrival: Arrival | None) -> None:
        """What a new connection found at ``route`` (None: it failed there)."""
        if arrival is None:
            self.topology.unreachable(route.address)
            return
        self._track(route.address)
        if self.role == "master" and arrival.role == "master":
            self.topology.reached_master(route.address, arrival.replicas, arrival.replid)

    @property
    def last_address(self) -> Address | None:
        """The node ``connection_kwargs`` name: the one this pool last reached, at the port it
        connects to there (see ``Settings.dial_address``); None before any."""
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
        dialed = self.settings.dial_address(addr)
        if (kwargs["host"], kwargs["port"]) != dialed:
            kwargs["host"], kwargs["port"] = dialed

    @property
    def current_master(self) -> Address | None:
        return self.topology.current

    # --- following failover ---------------------------------------------------------------

    @property
    def outage(self) -> Outage:
        """Whether this pool's role is lost right now: one state for the whole process (see ``Topology``)."""
        return self.topology.outages[self.role]

    @property
    def switch_epoch(self) -> int:
        """Master changes this process has followed."""
        return self.topology.switch_epoch

    def wait_for_switch(self, since_epoch: int, timeout_s: float) -> None:
        self.topology.wait_for_switch(since_epoch, timeout_s)

    def master_moved(self, master: Address, *, interrupt_in_use: bool) -> None:
        """Called by the topology: drop every connection, interrupting in-use ones when asked."""
        if self.role == "master":
            self._track(master)
        with self._lock:
            self.generation += 1
            for conn in self._available_connections:
                conn.disconnect()
            if interrupt_in_use:
                for conn in self._in_use_connections:
                    if isinstance(conn, HAConnection):
                        conn.interrupt()

    def drop_idle(self) -> None:
        """After a failed command: idle sockets to the same place are likely dead too."""
        with self._lock:
            for conn in self._available_connections:
                conn.disconnect()

    def disable_watcher(self) -> None:
        """This process will not subscribe to +switch-master: for short-lived children whose parent
        watches already. Commands still re-resolve the master through Sentinel on any error."""
        self.topology.disable_watcher()

    # --- pool plumbing --------------------------------------------------------------------

    def release(self, connection: Any) -> None:
        # A connection from before a failover may point at the old master: never reuse it.
        if connection.generation != self.generation:
            connection.disconnect()
        super().release(connection)

    def close(self) -> None:
        self.topology.detach(self)
        super().close()
