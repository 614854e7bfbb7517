"""RQ 3.0's ``WorkerPool`` running ``HAWorker`` processes on Sentinel-aware connections.

``redis-ha worker --processes N`` runs one pool process that forks N ``HAWorker`` processes
(each forks a work-horse per job, as a single worker does) and starts a new one if one dies.
RQ builds each worker's connection by cloning the pool's (``rq.worker_pool.run_worker``); an
``RQRedis`` turns that clone into a fresh Sentinel-aware connection, so every worker and every
work-horse follows failovers by itself.

SIGTERM (or SIGINT) to the pool process is passed to every worker as a warm shutdown: each
finishes its current job, then the pool exits.

With metrics, the workers count into counters shared with the pool process, which adds them to
its Prometheus counters about once a second: one endpoint reports the whole pool.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
from collections.abc import Sequence
from typing import Any

from rq.worker_pool import ForkProcess, WorkerPool, run_worker

from redis_ha.rq.connection import RQRedis
from redis_ha.rq.dequeue import WorkerQueue
from redis_ha.rq.worker import HAWorker

logger = logging.getLogger(__name__)

SHARED_COUNTERS = ("jobs_done", "jobs_failed", "reconnects", "orphans")
"""The ``WorkerMetrics`` counters a pool's workers increment."""


class _SharedCounter:
    """A counter a forked worker increments and its pool process reads (``Counter.inc``'s shape)."""

    def __init__(self) -> None:
        self.value: Any = multiprocessing.get_context("fork").Value("q", 0)

    def inc(self, amount: float = 1) -> None:
        with self.value.get_lock():
            self.value.value += int(amount)

    def get(self) -> int:
        with self.value.get_lock():
            return int(self.value.value)


class SharedMetrics:
    """What an ``HAWorker`` counts (``metrics=``), shared across fork with the pool process."""

    def __init__(self) -> None:
        self.jobs_done = _SharedCounter()
        self.jobs_failed = _SharedCounter()
        self.reconnects = _SharedCounter()
        self.orphans = _SharedCounter()


class HAWorkerPool(WorkerPool):
    """``WorkerPool`` of ``HAWorker``s; ``metrics`` (a ``WorkerMetrics``) gets the whole pool's counts."""

    def __init__(
        self,
        queue_names: Sequence[str],
        connection: RQRedis,
        num_workers: int,
        metrics: Any = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(connection, RQRedis):
            raise TypeError("HAWorkerPool needs an RQRedis connection (redis_ha.rq.rq_connection())")
        super().__init__(
            list(queue_names),
            connection=connection,
            num_workers=num_workers,
            worker_class=HAWorker,
            queue_class=WorkerQueue,
            **kwargs,
        )
        self.ha_metrics = metrics
        self._shared = SharedMetrics() if metrics is not None else None
        self._synced = dict.fromkeys(SHARED_COUNTERS, 0)

    def get_worker_process(self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO") -> Any:
        """RQ's worker process (``run_worker``, cloning the connection), counting into the shared metrics."""
        worker_class = functools.partial(HAWorker, metrics=self._shared) if self._shared is not None else HAWorker
        return ForkProcess(
            target=run_worker,
            args=(name, self._queue_names, self._connection_class, self._pool_class, self._pool_kwargs),
            kwargs={
                "_sleep": _sleep,
                "burst": burst,
                "logging_level": logging_level,
                "worker_class": worker_class,
                "job_class": self.job_class,
                "queue_class": self.queue_class,
                "serializer": self.serializer,
                "exception_handlers": self.exception_handlers,
            },
            name=f"Worker {name} (WorkerPool {self.name})",
        )

    def check_workers(self, respawn: bool = True) -> None:
        self.sync_metrics()
        super().check_workers(respawn=respawn)

    def handle_dead_worker(self, worker_data: Any) -> None:
        if self.status != self.Status.STOPPED and worker_data.process.exitcode != 0:
            logger.warning(
                "Worker process %d of pool %s ended with exit code %s; starting another.",
                worker_data.pid,
                self.name,
                worker_data.process.exitcode,
            )
        super().handle_dead_worker(worker_data)

    def sync_metrics(self) -> None:
        """Add what the workers counted since the last call to the pool's Prometheus counters."""
        if self._shared is None or self.ha_metrics is None:
            return
        for name in SHARED_COUNTERS:
            total = getattr(self._shared, name).get()
            delta = total - self._synced[name]
            if delta > 0:
                getattr(self.ha_metrics, name).inc(delta)
                self._synced[name] = total

    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        try:
            super().start(burst=burst, logging_level=logging_level)
        finally:
            self.sync_metrics()
