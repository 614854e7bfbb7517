"""What the Sentinels announce during a drill, heard as it happens: the failover's own timeline.

Sentinel publishes each step of its work on a channel named after the step (``+sdown``,
``+odown``, ``+failover-state-send-slaveof-noone``, ``+promoted-slave``, ``+switch-master`` ...).
``SentinelEar`` subscribes to every Sentinel of the cluster, one thread each (a killed or cut-off
Sentinel is simply not heard, and its thread retries until stopped), and keeps what concerns the
monitored master, stamped with this machine's clock when it arrived. ``report.failover_steps()``
picks from those the steps the report shows, so a write gap can be split into detection, election
and promotion, and what came after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis

from redis_ha.config import Address, Settings, format_address
from redis_ha.drill.records import Event
from redis_ha.sentinel import probe_client

logger = logging.getLogger(__name__)

CHANNELS = (
    "+sdown",
    "-sdown",
    "+odown",
    "-odown",
    "+try-failover",
    "+elected-leader",
    "+failover-state-send-slaveof-noone",
    "+promoted-slave",
    "+switch-master",
    "+failover-end",
    "-failover-abort-no-good-slave",
    "+failover-end-for-timeout",
)
LISTEN_POLL_S = 0.5
RECONNECT_DELAY_S = 0.5
SOCKET_TIMEOUT_S = 2.0


def concerns(master_name: str, data: str) -> bool:
    """Whether a Sentinel message is about ``master_name``: the master itself, or one of its replicas. Pure.

    ``master mymaster 10.0.0.1 6379``, ``slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379``,
    ``mymaster 10.0.0.1 6379 10.0.0.2 6379`` (``+switch-master``).
    """
    words = data.split()
    if not words:
        return False
    if words[0] == master_name:
        return True
    if words[0] == "master":
        return len(words) > 1 and words[1] == master_name
    return "@" in words and words.index("@") + 1 < len(words) and words[words.index("@") + 1] == master_name


def heard(at: float, sentinel: Address, channel: str, data: str) -> Event:
    """The record of one message: ``detail`` is the Sentinel's address, a space, the message."""
    return Event(at, channel, f"{format_address(sentinel)} {data}")


class SentinelEar:
    """Listens to every Sentinel in ``settings.sentinels`` until ``stop()``; ``events`` is what it heard."""

    def __init__(self, settings: Settings, channels: Sequence[str] = CHANNELS) -> None:
        self.settings = settings
        self.channels = tuple(channels)
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for addr in self.settings.sentinels:
            thread = threading.Thread(
                target=self._run, args=(addr,), name=f"drill-ear-{format_address(addr)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> list[Event]:
        """Stop listening (bounded) and return what was heard, oldest first."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=SOCKET_TIMEOUT_S + 1.0)
        with self._lock:
            return sorted(self.events, key=lambda e: e.at)

    def _run(self, addr: Address) -> None:
        while not self._stop.is_set():
            try:
                self._listen(addr)
            except (redis.RedisError, OSError) as exc:
                logger.debug("Not listening to sentinel %s for now: %s", format_address(addr), exc)
            self._stop.wait(RECONNECT_DELAY_S)

    def _listen(self, addr: Address) -> None:
        client = probe_client(self.settings, addr, sentinel=True, socket_timeout_s=SOCKET_TIMEOUT_S)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(*self.channels)
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=LISTEN_POLL_S)
                if not message or message.get("type") != "message":
                    continue
                data = str(message["data"])
                if concerns(self.settings.master_name, data):
                    with self._lock:
                        self.events.append(heard(time.time(), addr, str(message["channel"]), data))
        finally:
            pubsub.close()
            client.close()
