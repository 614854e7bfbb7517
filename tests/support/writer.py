"""A plain writer in a background thread, counting the writes that succeeded and the errors an app
would have seen: the "did anyone notice?" probe of tests that change the cluster under a client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis

WRITE_INTERVAL_S = 0.01


@dataclass
class WriterCount:
    writes: int = 0
    errors: list[str] = field(default_factory=list)


@contextmanager
def background_writes(client: Any, key: str, *, max_writes: int, keys: int = 1) -> Iterator[WriterCount]:
    """SET ``key:<n % keys>`` every 10 ms until the block ends or ``max_writes`` succeeded."""
    count = WriterCount()
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set() and count.writes < max_writes:
            try:
                client.set(f"{key}:{count.writes % keys}", count.writes)
                count.writes += 1
            except redis.RedisError as error:
                count.errors.append(str(error))
            time.sleep(WRITE_INTERVAL_S)

    writer = threading.Thread(target=write, name=f"writer-{key}")
    writer.start()
    try:
        yield count
    finally:
        stop.set()
        writer.join(timeout=60)
