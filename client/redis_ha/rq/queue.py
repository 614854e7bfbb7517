"""An RQ ``Queue`` whose enqueue rides through failover without ever creating a job twice.

Its enqueue goes through the idempotent enqueue script (``redis_ha.rq.enqueue``), durable when
asked (``WAIT``), and into the outbox (``redis_ha.rq.flusher``) when Redis stays unreachable
past the retry deadline; the job id is fixed before the first attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import rq
from rq.job import Job, JobStatus, Retry
from rq.utils import now

from redis_ha.client import HARedis
from redis_ha.errors import RedisUnavailable
from redis_ha.outbox import Outbox, OutboxEntry
from redis_ha.rq.connection import rq_connection
from redis_ha.rq.defaults import DURABLE_ALL, RQSettings, load_rq_settings
from redis_ha.rq.enqueue import Enqueuer
from redis_ha.rq.flusher import OutboxFlusher, flusher_for

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one batch: how many jobs were new in Redis, already there, or outboxed."""

    created: int = 0
    existing: int = 0
    outboxed: int = 0


_CREATE_JOB_POSITIONAL = (
    "args",
    "kwargs",
    "timeout",
    "result_ttl",
    "ttl",
    "failure_ttl",
    "description",
    "depends_on",
    "job_id",
    "meta",
    "status",
    "retry",
    "repeat",
)


class Queue(rq.Queue):
    """``rq.Queue`` on an HA connection, with idempotent, optionally durable, enqueue.

    ``durable``: None = from ``RQ_DURABLE``; 0/False = off; N = N replicas; ``"all"``/True =
    every healthy replica Sentinel reports (the only setting that cannot lose an acknowledged
    job in a planned failover). ``outbox``: a path for the on-disk outbox, or None for
    ``RQ_OUTBOX_PATH`` (unset: no outbox, ``RedisUnavailable`` is raised at the deadline).

    Enqueues with dependencies, ``unique=True``, rate limits, a caller's pipeline, or on a
    synchronous queue go through RQ's own code path and are not idempotent.
    """

    def __init__(
        self,
        name: str = "default",
        connection: redis.Redis | None = None,
        *,
        rq_settings: RQSettings | None = None,
        durable: bool | int | str | None = None,
        outbox: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, connection=connection if connection is not None else rq_connection(), **kwargs)
        self.rq_settings = rq_settings if rq_settings is not None else load_rq_settings()
        self.durable_replicas = _durable_replicas(durable, self.rq_settings.durable_replicas)
        self.durable_timeout_ms = self.rq_settings.durable_timeout_ms
        self._enqueuer: Enqueuer | None = None
        self._flusher: OutboxFlusher | None = None
        outbox_path = outbox if outbox is not None else self.rq_settings.outbox_path
        if outbox_path is not None and self._ha:
            self._flusher = flusher_for(
                Path(outbox_path), self.enqueuer, self.durable_replicas, self.durable_timeout_ms
            )

    @property
    def _ha(self) -> bool:
        return isinstance(self.connection, HARedis)

    @property
    def enqueuer(self) -> Enqueuer:
        if self._enqueuer is None:
            if not isinstance(self.connection, HARedis):
                raise TypeError("idempotent enqueue needs a redis_ha connection")
            self._enqueuer = Enqueuer(self.connection, self.rq_settings.enqueue_dedup_ttl_s)
        return self._enqueuer

    @property
    def outbox(self) -> Outbox | None:
        return self._flusher.outbox if self._flusher is not None else None

    def flush_outbox(self) -> int:
        """Send what the outbox holds now (raises ``RedisUnavailable`` if Redis is still down).

        If another process is sending it, waits for that (up to the retry deadline) and returns 0."""
        if self._flusher is None:
            return 0
        return self._flusher.flush(wait_s=self.enqueuer.connection.settings.retry_deadline_s)

    # --- job defaults ----------------------------------------------------------------------

    def create_job(self, func: Any, *args: Any, **kwargs: Any) -> Job:
        s = self.rq_settings
        kwargs.update(zip(_CREATE_JOB_POSITIONAL, args, strict=False))
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = s.job_timeout_s
        if kwargs.get("result_ttl") is None:
            kwargs["result_ttl"] = s.result_ttl_s
        if kwargs.get("failure_ttl") is None:
            kwargs["failure_ttl"] = s.failure_ttl_s
        if kwargs.get("retry") is None and s.retry_max > 0:
            kwargs["retry"] = Retry(max=s.retry_max, interval=list(s.retry_intervals_s) or 0)
        return super().create_job(func, **kwargs)

    # --- enqueue ---------------------------------------------------------------------------

    def _plain(self, job: Job, pipeline: Any, unique: bool) -> bool:
        """True when this enqueue must take RQ's own (non-idempotent) path."""
        return bool(
            not self._ha
            or pipeline is not None
            or unique
            or job._dependency_ids
            or job.has_rate_limit
            or not self._is_async
            or job.get_status(refresh=False) == JobStatus.DEFERRED
        )

    def enqueue_job(self, job: Job, pipeline: Any = None, at_front: bool = False, unique: bool = False) -> Job:
        if self._plain(job, pipeline, unique):
            return super().enqueue_job(job, pipeline=pipeline, at_front=at_front, unique=unique)
        self._send([(job, at_front)])
        return job

    def enqueue_many(self, job_datas: Iterable[Any], pipeline: Any = None, group_id: str | None = None) -> list[Job]:
        """Batch enqueue: one pipelined round trip (and one ``WAIT`` in durable mode) for all jobs."""
        datas = list(job_datas)
        if pipeline is not None or not self._ha or any(d.depends_on for d in datas):
            return list(super().enqueue_many(datas, pipeline=pipeline, group_id=group_id))
        ids = [d.job_id for d in datas if d.job_id is not None]
        if len(ids) != len(set(ids)):
            raise ValueError("a job id appears more than once in enqueue_many()")
        jobs = [
            self.create_job(
                d.func,
                args=d.args,
                kwargs=d.kwargs,
                timeout=d.timeout,
                result_ttl=d.result_ttl,
                ttl=d.ttl,
                failure_ttl=d.failure_ttl,
                description=d.description,
                job_id=d.job_id,
                meta=d.meta,
                retry=d.retry,
                repeat=d.repeat,
                on_success=d.on_success,
                on_failure=d.on_failure,
                on_stopped=d.on_stopped,
                webhooks=d.webhooks,
                group_id=group_id,
            )
            for d in datas
        ]
        self._send([(job, bool(d.at_front)) for job, d in zip(jobs, datas, strict=True)])
        return jobs

    def _send(self, jobs: Sequence[tuple[Job, bool]]) -> Outcome:
        entries = []
        for job, at_front in jobs:
            job.origin = self.name
            job.enqueued_at = now()
            if job.timeout is None:
                job.timeout = self._default_timeout
            job._status = JobStatus.QUEUED
            # The id is fixed here, before the first attempt: every retry sends the same job.
            entries.append(
                OutboxEntry(job_id=job.id, queue=self.name, mapping=job.to_dict(), at_front=at_front, ttl=job.ttl)
            )
        flusher = self._flusher
        if flusher is not None and (flusher.pending or flusher.redis_down):
            # Keep order: jobs already waiting on disk go first.
            return self._to_outbox(flusher, entries, None)
        try:
            results = self.enqueuer.send(entries, self.durable_replicas, self.durable_timeout_ms)
        except RedisUnavailable as exc:
            if flusher is None:
                raise
            return self._to_outbox(flusher, entries, exc)
        created = sum(results)
        return Outcome(created=created, existing=len(results) - created)

    def _to_outbox(self, flusher: OutboxFlusher, entries: list[OutboxEntry], error: Exception | None) -> Outcome:
        if error is not None and not flusher.redis_down:
            logger.warning(
                "Redis unreachable past the retry deadline (%s); storing jobs in outbox %s until it is back.",
                str(error).splitlines()[0],
                flusher.outbox.path,
            )
        if error is not None:
            flusher.redis_down = True
        for entry in entries:
            flusher.outbox.add(entry)
        flusher.pending = True
        flusher.wake()
        return Outcome(outboxed=len(entries))


def _durable_replicas(durable: bool | int | str | None, default: int) -> int:
    if durable is None:
        return default
    if durable is True or durable == "all":
        return DURABLE_ALL
    if durable is False:
        return 0
    if isinstance(durable, int) and durable >= 0:
        return durable
    raise ValueError(f"durable is {durable!r}; expected None, False/0, a number of replicas, True or 'all'")
