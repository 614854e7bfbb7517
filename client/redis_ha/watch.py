"""Listening for ``+switch-master`` so a failover is noticed when it happens, not when a command fails.

Several sentinels are watched at once (two by default), so losing one sentinel — often
on the same host as the failed master — does not blind the client.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable

import redis
from redis.client import PubSub

from redis_ha.config import Address, format_address
from redis_ha.reconnect import loop_pause_s
from redis_ha.sentinel import SentinelDirectory, probe_client

logger = logging.getLogger(__name__)

SUBSCRIBE_POLL_S = 1.0
PUBSUB_HEALTH_CHECK_S = 5
STOP_JOIN_TIMEOUT_S = 1.0
"""Longest ``stop()`` waits for a watcher thread, seconds; a woken thread ends in milliseconds."""


class SwitchWatcher:
    """Daemon threads subscribed to +switch-master; calls ``on_switch(new_address)``."""

    def __init__(self, directory: SentinelDirectory, on_switch: Callable[[Address, Address], None]) -> None:
        self._directory = directory
        self._on_switch = on_switch
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listening: dict[int, PubSub] = {}  # slot -> its subscription, so stop() can wake it
        self._lock = threading.Lock()

    def start(self) -> None:
        count = min(self._directory.settings.watched_sentinels, max(1, len(self._directory.addresses)))
        for slot in range(count):
            thread = threading.Thread(target=self._run, args=(slot, count), name=f"redis-ha-watch-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """End every watcher thread now: a thread waiting for a message is woken by closing its socket."""
        self._stop.set()
        with self._lock:
            listening = list(self._listening.values())
        for pubsub in listening:
            _interrupt(pubsub)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=STOP_JOIN_TIMEOUT_S)

    def _run(self, slot: int, stride: int) -> None:
        """Stay subscribed to one sentinel; on trouble move on to the next one."""
        index, failures = slot, 0
        while not self._stop.is_set():
            addresses = self._directory.addresses
            addr = addresses[index % len(addresses)]
            began = time.monotonic()
            try:
                self._listen(addr, slot)
            except (redis.RedisError, OSError) as exc:
                # A subscription that held for a while starts the count again.
                failures = 1 if time.monotonic() - began > PUBSUB_HEALTH_CHECK_S else failures + 1
                logger.debug("Stopped watching sentinel %s: %s", format_address(addr), exc)
            index += stride if len(addresses) > stride else 1
            self._stop.wait(loop_pause_s(failures))

    def _listen(self, addr: Address, slot: int) -> None:
        client = probe_client(
            self._directory.settings,
            addr,
            sentinel=True,
            socket_timeout_s=PUBSUB_HEALTH_CHECK_S * 2,
            health_check_interval=PUBSUB_HEALTH_CHECK_S,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        with self._lock:
            self._listening[slot] = pubsub
        try:
            pubsub.subscribe("+switch-master")
            logger.debug("Watching sentinel %s for +switch-master.", format_address(addr))
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=SUBSCRIBE_POLL_S)
                if message and message.get("type") == "message":
                    self._handle(str(message["data"]), addr)
        finally:
            with self._lock:
                self._listening.pop(slot, None)
            pubsub.close()
            client.close()

    def _handle(self, data: str, sentinel: Address) -> None:
        # "<master name> <old ip> <old port> <new ip> <new port>"
        parts = data.split()
        if len(parts) != 5 or parts[0] != self._directory.master_name:
            return
        old = (parts[1], int(parts[2]))
        new = (parts[3], int(parts[4]))
        logger.debug("Sentinel %s announced +switch-master %s", format_address(sentinel), data)
        self._on_switch(old, new)


def _interrupt(pubsub: PubSub) -> None:
    """Wake a thread blocked reading ``pubsub``; that thread then closes it."""
    sock = getattr(pubsub.connection, "_sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
