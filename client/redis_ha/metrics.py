"""Prometheus metrics for ``redis-ha worker`` (prometheus-client), on a registry of its own.

Counters are incremented by the worker as things happen; queue depths, failovers seen and the
outbox size are read when Prometheus scrapes, so a scrape always shows the current state. A
scrape never waits on a Redis outage for long: its reads use a short retry deadline and a
failed read leaves that metric out of the scrape (``redis_ha_rq_scrape_ok`` says so).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis
from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from redis_ha.client import HARedis
from redis_ha.outbox import Outbox

logger = logging.getLogger(__name__)

DEFAULT_METRICS_ADDR = "127.0.0.1"
SCRAPE_RETRY_DEADLINE_S = 1.0
"""How long a scrape tries to read queue depths from Redis before leaving them out, seconds."""


class WorkerMetrics:
    """What a worker counts, plus what a scrape reads live."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.jobs_done = Counter(
            "redis_ha_rq_jobs_done", "Jobs this worker finished successfully.", registry=self.registry
        )
        self.jobs_failed = Counter(
            "redis_ha_rq_jobs_failed", "Job runs that raised or were killed.", registry=self.registry
        )
        self.reconnects = Counter(
            "redis_ha_rq_reconnects", "Times the worker lost Redis and reconnected.", registry=self.registry
        )
        self.orphans = Counter(
            "redis_ha_rq_orphans_recovered",
            "Jobs found orphaned by a failover and handed back.",
            registry=self.registry,
        )

    def watch(self, connection: HARedis, queue_names: Sequence[str], outbox_path: str | None = None) -> None:
        """Also report failovers seen by ``connection``, the depth of ``queue_names`` and the outbox size."""
        self.registry.register(_LiveCollector(connection, list(queue_names), outbox_path))

    def serve(self, port: int, addr: str = DEFAULT_METRICS_ADDR) -> None:
        start_http_server(port, addr=addr, registry=self.registry)
        logger.info("Serving Prometheus metrics on http://%s:%d/metrics.", addr, port)


class _LiveCollector(Collector):
    def __init__(self, connection: HARedis, queue_names: list[str], outbox_path: str | None) -> None:
        self.connection = connection
        self.queue_names = queue_names
        self.outbox_path = outbox_path
        settings = dataclasses.replace(connection.settings, retry_deadline_s=SCRAPE_RETRY_DEADLINE_S)
        self.reader = HARedis(settings)

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        failovers = CounterMetricFamily("redis_ha_failovers_seen", "Master changes this worker's connection followed.")
        failovers.add_metric([], float(self.connection.ha_pool.switch_epoch))
        yield failovers
        ok = GaugeMetricFamily("redis_ha_rq_scrape_ok", "1 if this scrape could read queue depths from Redis.")
        try:
            with self.reader.pipeline(transaction=False) as pipe:
                for name in self.queue_names:
                    pipe.llen(f"rq:queue:{name}")
                depths = pipe.execute()
        except redis.RedisError:
            ok.add_metric([], 0.0)
        else:
            ok.add_metric([], 1.0)
            depth = GaugeMetricFamily("redis_ha_rq_queue_depth", "Jobs waiting in each queue.", labels=["queue"])
            for name, count in zip(self.queue_names, depths, strict=True):
                depth.add_metric([name], float(count))
            yield depth
        yield ok
        # Always reported, 0 without an outbox (none configured, or not created yet): a dashboard
        # panel then shows 0 rather than "no data", which would look like a scrape problem.
        size = GaugeMetricFamily("redis_ha_rq_outbox_size", "Jobs waiting in the local outbox for Redis.")
        path = self.outbox_path
        size.add_metric([], float(len(Outbox(path))) if path and Path(path).exists() else 0.0)
        yield size
