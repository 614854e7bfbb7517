"""Noticing a replica that Sentinel has just promoted, before Sentinel says so.

Sentinel sends ``REPLICAOF NO ONE`` to the replica it picked, then learns that it took effect
at its next ``INFO`` poll (up to a second later), and only then answers
``GET-MASTER-ADDR-BY-NAME`` with the new address. While the old master is unreachable, the
client asks the old master's replicas directly: one that says ``role:master`` *and* carries the
old master's replication id as ``master_replid2`` was promoted out of that master's stream. A
node restarted empty, or a stray master elsewhere, has a different history and is ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from redis_ha.config import Address, Settings, format_address
from redis_ha.sentinel import probe_client

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.05


def parse_info(raw: Any) -> dict[str, str]:
    """``INFO`` text (bytes or str) as a dict; redis-py may also hand back a parsed dict."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def replicas_in_role_reply(reply: Sequence[Any]) -> list[Address]:
    """The replicas listed in a master's ``ROLE`` reply: ``["master", offset, [[ip, port, offset], ...]]``."""
    found: list[Address] = []
    for entry in reply[2] if len(reply) > 2 else ():
        host = entry[0].decode() if isinstance(entry[0], bytes) else str(entry[0])
        found.append((host, int(entry[1])))
    return found


def promoted_from(info: Mapping[str, str], lineage: str) -> bool:
    """True when this node is a master whose previous replication history is ``lineage``."""
    return info.get("role") == "master" and bool(lineage) and info.get("master_replid2") == lineage


class PromotionProbe:
    """Asks a lost master's replicas whether one of them took over; rate-limited, thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._clients: dict[Address, redis.Redis] = {}
        self._lock = threading.Lock()
        self._probed_at = 0.0
        self._last_answer: Address | None = None
        self._announced: Address | None = None

    def find(self, candidates: Callable[[], Sequence[Address]], lineage: str) -> Address | None:
        """The candidate that took over from the master whose replication id is ``lineage``, if any."""
        with self._lock:
            if time.monotonic() - self._probed_at < PROBE_INTERVAL_S:
                return self._last_answer
            self._probed_at = time.monotonic()
            self._last_answer = None
            for addr in candidates():
                try:
                    info = parse_info(self._client(addr).execute_command("INFO", "replication"))
                except (redis.RedisError, OSError):
                    continue
                if promoted_from(info, lineage):
                    self._last_answer = addr
                    break
            answer = self._last_answer
        if answer is not None and answer != self._announced:
            self._announced = answer
            logger.warning(
                "Replica %s has taken over (it carries the lost master's replication history); "
                "using it before Sentinel announces the switch.",
                format_address(answer),
            )
        return answer

    def _client(self, addr: Address) -> redis.Redis:
        client = self._clients.get(addr)
        if client is None:
            client = probe_client(self.settings, addr, sentinel=False)
            self._clients[addr] = client
        return client

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
