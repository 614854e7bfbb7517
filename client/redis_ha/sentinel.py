"""Asking Sentinel where the master and the replicas are, as the Sentinel client spec says.

Sentinels are asked in turn with a short per-sentinel timeout; the first that answers is
moved to the front of the list, and the list is refreshed from the sentinels themselves
so a sentinel added later is found without reconfiguring the app.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

from redis_ha.config import Address, Settings, credentials, format_address, format_addresses
from redis_ha.errors import AuthError
from redis_ha.judgement import is_auth_failure

logger = logging.getLogger(__name__)

SENTINEL_REFRESH_INTERVAL_S = 60.0
_BAD_REPLICA_FLAGS = frozenset({"s_down", "o_down", "disconnected"})


def no_retry() -> Retry:
    """redis-py retries on its own by default; redis_ha's retry loop is the only one."""
    return Retry(NoBackoff(), 0)


def tls_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of redis-py's ``SSLConnection`` (and of ``redis.Redis`` with ``ssl=True``).

    No ``ssl`` key: a connection pool passes these straight to its connection class, which takes
    only the ``ssl_*`` ones; ``probe_client`` adds ``ssl=True`` for ``redis.Redis`` itself.
    """
    if not settings.tls:
        return {}
    return {
        "ssl_cert_reqs": "required",
        "ssl_ca_certs": settings.tls_ca_file,
        "ssl_certfile": settings.tls_cert_file,
        "ssl_keyfile": settings.tls_key_file,
    }


def probe_client(
    settings: Settings,
    addr: Address,
    *,
    sentinel: bool,
    socket_timeout_s: float | None = None,
    **extra: Any,
) -> redis.Redis:
    """A plain client for one sentinel (``sentinel=True``) or one Redis node, for short questions.

    Short timeouts, TCP keepalive, credentials and TLS from the settings, no retries of its own.
    """
    if sentinel:
        username, password = settings.sentinel_username, settings.sentinel_password
    else:
        username, password = settings.username, settings.password
    host, port = settings.dial_address(addr)
    return redis.Redis(
        host=host,
        port=port,
        **credentials(username, password),
        socket_timeout=settings.sentinel_timeout_s if socket_timeout_s is None else socket_timeout_s,
        socket_connect_timeout=settings.sentinel_timeout_s,
        socket_keepalive=True,
        retry=no_retry(),
        decode_responses=True,
        **({"ssl": True, **tls_kwargs(settings)} if settings.tls else {}),
        **extra,
    )


def _replica_list(replicas: Any, *, healthy_only: bool) -> list[Address]:
    """Addresses from a ``SENTINEL SLAVES`` reply; with ``healthy_only`` those linked and not down."""
    listed: list[Address] = []
    for replica in replicas:
        flags = set(str(replica.get("flags", "")).split(","))
        link_ok = replica.get("master-link-status", "ok") == "ok"
        if not healthy_only or (link_ok and not flags & _BAD_REPLICA_FLAGS):
            listed.append((str(replica["ip"]), int(replica["port"])))
    return listed


class SentinelDirectory:
    """The sentinels we know, and what they say about one monitored master."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.master_name = settings.master_name
        self._addresses: list[Address] = list(settings.sentinels)
        self._clients: dict[Address, redis.Redis] = {}
        self._unreachable: set[Address] = set()
        self._lock = threading.Lock()
        self._refreshed_at = 0.0

    @property
    def addresses(self) -> list[Address]:
        with self._lock:
            return list(self._addresses)

    def client(self, addr: Address) -> redis.Redis:
        """A client for one sentinel: short timeouts, no retries of its own."""
        with self._lock:
            client = self._clients.get(addr)
            if client is None:
                client = probe_client(self.settings, addr, sentinel=True)
                self._clients[addr] = client
            return client

    def master_address(self) -> Address:
        """Ask each sentinel in turn; raise MasterNotFoundError saying what each one answered."""
        problems: list[str] = []
        auth_failures = 0
        addresses = self.addresses
        for addr in addresses:
            try:
                # Not redis-py's sentinel_*() helpers: before 7.1 they break on a plain Redis client
                # (their `once`/`return_responses` options reach the reply parser).
                reply: Any = self.client(addr).execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.master_name)
            except (redis.RedisError, OSError) as exc:
                # AuthenticationError is a ConnectionError in redis-py: test for it first.
                if is_auth_failure(exc):
                    auth_failures += 1
                    problems.append(f"sentinel {format_address(addr)} refused our credentials: {exc}")
                elif isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
                    self._mark(addr, reachable=False, reason=str(exc))
                    problems.append(f"sentinel {format_address(addr)}: {exc}")
                else:
                    problems.append(f"sentinel {format_address(addr)}: {exc}")
                continue
            self._mark(addr, reachable=True)
            if not reply:
                problems.append(f"sentinel {format_address(addr)} does not monitor a master named '{self.master_name}'")
                continue
            self._promote(addr)
            self._maybe_refresh(addr)
            return (str(reply[0]), int(reply[1]))
        if addresses and auth_failures == len(addresses):
            raise AuthError(
                f"every sentinel refused our credentials (user '{self.settings.sentinel_username or 'default'}'); "
                "check REDIS_SENTINEL_USERNAME and REDIS_SENTINEL_PASSWORD(_FILE): " + "; ".join(problems)
            )
        raise MasterNotFoundError(
            f"no sentinel of {format_addresses(addresses)} named a master '{self.master_name}': " + "; ".join(problems)
        )

    def replica_addresses(self, *, healthy_only: bool = True) -> list[Address]:
        """Replicas according to the first sentinel that answers; by default only those linked and not down."""
        for addr in self.addresses:
            try:
                replicas: Any = self.client(addr).execute_command("SENTINEL SLAVES", self.master_name)
            except redis.RedisError as exc:
                self._raise_if_refused(addr, exc)
                continue
            return _replica_list(replicas, healthy_only=healthy_only)
        return []

    def master_and_healthy_replicas(self) -> tuple[Address, list[Address]] | None:
        """The master and its healthy replicas as one sentinel sees them at one moment (both asked
        in one pipeline, which a sentinel runs without handling a hello in between); None if no
        sentinel answers. A sentinel that already follows a new master lists that one's replicas."""
        for addr in self.addresses:
            pipe = self.client(addr).pipeline(transaction=False)
            pipe.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.master_name)
            pipe.execute_command("SENTINEL SLAVES", self.master_name)
            try:
                master, replicas = pipe.execute()
            except redis.RedisError as exc:
                self._raise_if_refused(addr, exc)
                continue
            if master:
                return (str(master[0]), int(master[1])), _replica_list(replicas, healthy_only=True)
        return None

    @staticmethod
    def _raise_if_refused(addr: Address, exc: redis.RedisError) -> None:
        if is_auth_failure(exc):
            raise AuthError(f"sentinel {format_address(addr)} refused our credentials: {exc}") from exc

    def _promote(self, addr: Address) -> None:
        """The spec: the sentinel that answered goes first next time."""
        with self._lock:
            if self._addresses and self._addresses[0] != addr and addr in self._addresses:
                self._addresses.remove(addr)
                self._addresses.insert(0, addr)

    def _maybe_refresh(self, addr: Address) -> None:
        """Add sentinels we were not told about, as reported by a sentinel that answered."""
        now = time.monotonic()
        if now - self._refreshed_at < SENTINEL_REFRESH_INTERVAL_S:
            return
        self._refreshed_at = now
        try:
            peers: Any = self.client(addr).execute_command("SENTINEL SENTINELS", self.master_name)
        except redis.RedisError as exc:
            logger.debug("Could not refresh the sentinel list from %s: %s", format_address(addr), exc)
            return
        with self._lock:
            for peer in peers:
                peer_addr = (str(peer["ip"]), int(peer["port"]))
                flags = set(str(peer.get("flags", "")).split(","))
                if peer_addr not in self._addresses and not flags & _BAD_REPLICA_FLAGS:
                    self._addresses.append(peer_addr)
                    logger.info("Learned of sentinel %s from %s.", format_address(peer_addr), format_address(addr))

    def _mark(self, addr: Address, *, reachable: bool, reason: str = "") -> None:
        """Log once per change of a sentinel's reachability, never per attempt."""
        with self._lock:
            was_unreachable = addr in self._unreachable
            if reachable and was_unreachable:
                self._unreachable.discard(addr)
            elif not reachable and not was_unreachable:
                self._unreachable.add(addr)
            else:
                return
        if reachable:
            logger.info("Sentinel %s is reachable again.", format_address(addr))
        else:
            logger.warning("Sentinel %s is unreachable: %s", format_address(addr), reason)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
