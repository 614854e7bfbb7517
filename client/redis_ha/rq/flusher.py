"""The outbox flusher: sends jobs stored on disk (while Redis was unreachable) once Redis answers.

With an outbox (``outbox=path`` or ``RQ_OUTBOX_PATH``), a job that cannot reach Redis before
the retry deadline is stored on disk and sent later, in order, by a background flusher. Every
producer and worker with the outbox configured looks into it every ``OUTBOX_CHECK_INTERVAL_S``
and sends what it finds once Redis answers, jobs left by processes that have exited included;
one process at a time sends (``Outbox.draining``). One flusher per outbox file and process.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from redis_ha.client import HARedis
from redis_ha.errors import RedisUnavailable
from redis_ha.outbox import Outbox
from redis_ha.reconnect import loop_pause_s
from redis_ha.rq.defaults import RQSettings
from redis_ha.rq.enqueue import Enqueuer

logger = logging.getLogger(__name__)

OUTBOX_CHECK_INTERVAL_S = 5.0
"""How often a process looks for jobs in its outbox that it did not put there itself, seconds."""
OUTBOX_STOP_TIMEOUT_S = 1.0
"""Longest ``OutboxFlusher.close()`` waits for its thread, seconds."""
OUTBOX_BATCH = 200
"""Jobs sent per flush round trip."""


class OutboxFlusher:
    """One background thread per outbox file and process, sending stored jobs once Redis answers:
    this process's, and those other processes left (it looks every ``OUTBOX_CHECK_INTERVAL_S``)."""

    def __init__(self, outbox: Outbox, enqueuer: Enqueuer, replicas: int, timeout_ms: int) -> None:
        self.outbox = outbox
        self.enqueuer = enqueuer
        self.replicas = replicas
        self.timeout_ms = timeout_ms
        self.redis_down = False
        self.pending = outbox.has_entries()  # True: jobs wait on disk, ours go after them
        self._wake = threading.Event()
        self._stop = threading.Event()
        if self.pending:
            logger.warning("Outbox %s holds %d job(s) from earlier; sending them.", outbox.path, len(outbox))
            self._wake.set()  # at once, not after the first pause
        self._thread = threading.Thread(target=self._run, name="redis-ha-outbox", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def close(self) -> None:
        """Stop the background thread (jobs left on disk are sent by the next process to look)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=OUTBOX_STOP_TIMEOUT_S)

    def flush(self, wait_s: float = 0.0) -> int:
        """Send everything waiting, oldest first; return how many were sent. Raises while Redis is down.

        While another process sends this outbox, waits up to ``wait_s`` for it, else sends nothing."""
        return self._flush(wait_s) or 0

    def _flush(self, wait_s: float) -> int | None:
        """As ``flush``; None when another thread or process is sending the outbox."""
        sent = 0
        with self.outbox.draining(wait_s) as ours:
            if not ours:
                return None
            while True:
                batch = self.outbox.peek(OUTBOX_BATCH)
                if not batch:
                    self.pending = False
                    return sent
                self.enqueuer.send(batch, self.replicas, self.timeout_ms)
                self.outbox.remove([entry.seq for entry in batch])
                sent += len(batch)

    def _run(self) -> None:
        failures = 0  # flushes in a row that failed
        while not self._stop.is_set():
            busy = self.pending or self.redis_down
            self._wake.wait(loop_pause_s(failures) if busy else OUTBOX_CHECK_INTERVAL_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not (self.pending or self.outbox.has_entries()):
                    continue
                sent = self._flush(0.0)
            except RedisUnavailable as exc:
                failures += 1
                self.redis_down = True
                logger.debug("Outbox flush postponed: %s", str(exc).splitlines()[0])
                continue
            except Exception:
                failures += 1
                logger.exception("Outbox flush failed; retrying.")
                continue
            failures = 0
            if sent is None:
                continue  # another process is sending it
            if self.redis_down or sent:
                logger.warning("Redis is reachable again; sent %d job(s) from outbox %s.", sent, self.outbox.path)
            self.redis_down = False


_flushers: dict[tuple[str, int], OutboxFlusher] = {}
_flushers_lock = threading.Lock()


def flusher_for(path: Path, enqueuer: Enqueuer, replicas: int, timeout_ms: int) -> OutboxFlusher:
    key = (str(path.resolve()), os.getpid())
    with _flushers_lock:
        flusher = _flushers.get(key)
        if flusher is None:
            flusher = OutboxFlusher(Outbox(path), enqueuer, replicas, timeout_ms)
            _flushers[key] = flusher
        return flusher


def outbox_flusher(connection: HARedis, rq_settings: RQSettings) -> OutboxFlusher | None:
    """This process's flusher for the outbox ``rq_settings`` names (None: no outbox configured).

    A worker calls it too, so that jobs producers left on disk are sent while the worker runs."""
    if rq_settings.outbox_path is None:
        return None
    return flusher_for(
        Path(rq_settings.outbox_path),
        Enqueuer(connection, rq_settings.enqueue_dedup_ttl_s),
        rq_settings.durable_replicas,
        rq_settings.durable_timeout_ms,
    )
