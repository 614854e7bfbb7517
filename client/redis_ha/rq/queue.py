"""An RQ ``Queue`` whose enqueue rides through failover without ever creating a job twice.

Stock RQ enqueues with a pipeline holding HSET, EXPIRE, RPUSH and SADD. If the connection
breaks after sending it, nobody knows whether the RPUSH ran, and repeating it may queue the
job twice, so redis_ha refuses to repeat it (``CommandOutcomeUnknown``). Here the job id is
fixed before the first attempt and the whole enqueue is one Lua script that does nothing if
the job was already enqueued. Running it twice therefore has the effect of running it once,
and the retry loop may repeat it across a failover.

"Already enqueued" means: the job hash exists, or the job's dedup marker does. The script
writes the marker (``redis-ha:rq:enqueued:<job id>``, a few dozen bytes, TTL
``RQ_ENQUEUE_DEDUP_TTL``, default 24 h) with the job, so an enqueue retried or re-sent from the
outbox after the job ran and its hash expired (``result_ttl``) does not run the job again.

Durable mode (``durable=N`` or ``"all"``) adds ``WAIT`` after the script: the enqueue returns
only once enough replicas confirm it, else it is retried (on the new master after a failover)
until the deadline, then ``NotDurable`` is raised. When the job already exists the script
still makes one small write, so ``WAIT`` covers the earlier attempt's writes as well.

With an outbox (``outbox=path`` or ``RQ_OUTBOX_PATH``), a job that cannot reach Redis before
the retry deadline is stored on disk and sent later, in order, by a background flusher. Every
producer and worker with the outbox configured looks into it every ``OUTBOX_CHECK_INTERVAL_S``
and sends what it finds once Redis answers, jobs left by processes that have exited included;
one process at a time sends (``Outbox.draining``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import rq
from redis.client import Pipeline
from rq.job import Job, JobStatus, Retry
from rq.utils import now

from redis_ha.client import HARedis
from redis_ha.errors import NotDurable, RedisUnavailable
from redis_ha.outbox import Outbox, OutboxEntry
from redis_ha.rq.connection import rq_connection
from redis_ha.rq.defaults import DEFAULT_ENQUEUE_DEDUP_TTL_S, DURABLE_ALL, RQSettings, load_rq_settings

logger = logging.getLogger(__name__)

REPLICA_COUNT_CACHE_S = 2.0
"""How long the number of healthy replicas (for ``durable="all"``) is reused, seconds."""
OUTBOX_RETRY_PAUSE_S = 1.0
"""Pause between two flush attempts while Redis is still unreachable, seconds."""
OUTBOX_CHECK_INTERVAL_S = 5.0
"""How often a process looks for jobs in its outbox that it did not put there itself, seconds."""
OUTBOX_STOP_TIMEOUT_S = 1.0
"""Longest ``OutboxFlusher.close()`` waits for its thread, seconds."""
OUTBOX_BATCH = 200
"""Jobs sent per flush round trip."""
ACK_MARKER_KEY = "redis-ha:rq:enqueue-ack"
ACK_MARKER_TTL_MS = 60_000
DEDUP_MARKER_PREFIX = "redis-ha:rq:enqueued:"
"""``<prefix><job id>`` says the job was enqueued, for ``RQ_ENQUEUE_DEDUP_TTL`` seconds."""

# KEYS: job hash, queue list, RQ's set of queues, ack marker, dedup marker.
# ARGV: job id, at_front (1/0), ttl seconds ("" = none), dedup marker TTL seconds (0 = no
# marker), then the job hash as field, value, ...
# The marker is set first (SET NX: also the check); the EXISTS covers jobs enqueued without one.
ENQUEUE_SCRIPT = """
local dedup_ttl = tonumber(ARGV[4])
if (dedup_ttl > 0 and not redis.call('SET', KEYS[5], KEYS[2], 'NX', 'EX', dedup_ttl))
    or redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ACK_TTL_MS)
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
if ARGV[2] == '1' then redis.call('LPUSH', KEYS[2], ARGV[1]) else redis.call('RPUSH', KEYS[2], ARGV[1]) end
redis.call('SADD', KEYS[3], KEYS[2])
return 1
""".replace("ACK_TTL_MS", str(ACK_MARKER_TTL_MS))


@dataclass(frozen=True)
class Outcome:
    """What happened to one batch: how many jobs were new in Redis, already there, or outboxed."""

    created: int = 0
    existing: int = 0
    outboxed: int = 0


def streaming_replicas(info: Mapping[str, Any]) -> int:
    """Replicas a master's ``INFO replication`` lists as online (past their initial sync)."""
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave")
        and key[5:].isdigit()
        and isinstance(value, Mapping)
        and value.get("state") == "online"
    )


class Enqueuer:
    """Runs the idempotent enqueue script (and ``WAIT``) through the HA retry loop."""

    def __init__(self, connection: HARedis, dedup_ttl_s: int = DEFAULT_ENQUEUE_DEDUP_TTL_S) -> None:
        self.connection = connection
        self.dedup_ttl_s = dedup_ttl_s
        self.script = connection.register_script(ENQUEUE_SCRIPT)
        self._replicas: tuple[float, int] = (0.0, 0)

    def healthy_replicas(self) -> int:
        """Replicas that must confirm a write: the larger of Sentinel's healthy ones and those
        streaming from the master we write to (cached briefly).

        Sentinel's count alone fails when the Sentinel that answers is cut off with the old master
        (it sees no healthy replica while the new master has them); the master's count alone is
        unsafe in a planned failover (the replica being promoted has already left the old master,
        so WAIT for the rest acknowledges writes that are resynced away). Asking for more
        confirmations than needed only ever costs a retry."""
        fetched_at, count = self._replicas
        if time.monotonic() - fetched_at < REPLICA_COUNT_CACHE_S:
            return count
        directory = self.connection.ha_pool.directory
        from_sentinel = len(directory.replica_addresses()) if directory is not None else 0
        count = max(from_sentinel, streaming_replicas(self.connection.info("replication")))
        self._replicas = (time.monotonic(), count)
        return count

    def send(self, entries: Sequence[OutboxEntry], replicas: int = 0, timeout_ms: int = 1000) -> list[int]:
        """Enqueue every entry (1 = created, 0 = was already there), confirmed by ``replicas`` replicas."""
        conn = self.connection

        def attempt() -> list[int]:
            wanted = self.healthy_replicas() if replicas == DURABLE_ALL else replicas
            if replicas and wanted < 1:
                raise NotDurable(
                    "durable enqueue needs at least one healthy replica; neither Sentinel nor the master reports one"
                )
            try:
                results = self._run(entries, wanted, timeout_ms, load=False)
            except redis.exceptions.NoScriptError:
                results = self._run(entries, wanted, timeout_ms, load=True)
            if replicas:
                *results, confirmed = results
                if int(confirmed) < wanted:
                    raise NotDurable(
                        f"enqueue of {len(entries)} job(s) reached the master but only {confirmed} of {wanted} "
                        f"replicas confirmed it within {timeout_ms} ms"
                    )
            return [int(r) for r in results]

        return conn.retry_loop.run(attempt, [("EVALSHA",)], safe=True)

    def _run(self, entries: Sequence[OutboxEntry], replicas: int, timeout_ms: int, *, load: bool) -> list[Any]:
        # A plain pipeline: the HA retry loop around it (in send) is the only one.
        pipe = Pipeline(self.connection.connection_pool, self.connection.response_callbacks, False, None)
        wait_s = timeout_ms / 1000.0
        if replicas and wait_s >= self.connection.settings.socket_timeout_s * 0.8:
            # WAIT may block longer than a normal reply takes: give this connection the time.
            conn: Any = self.connection.connection_pool.get_connection()
            pipe.connection = conn
            conn.set_read_timeout(wait_s + self.connection.settings.socket_timeout_s)
            try:
                return self._fill_and_run(pipe, entries, replicas, timeout_ms, load=load)
            finally:
                conn.restore_read_timeout()
        return self._fill_and_run(pipe, entries, replicas, timeout_ms, load=load)

    def _fill_and_run(
        self, pipe: Pipeline, entries: Sequence[OutboxEntry], replicas: int, timeout_ms: int, *, load: bool
    ) -> list[Any]:
        if load:
            pipe.script_load(ENQUEUE_SCRIPT)
        for entry in entries:
            job_key = Job.key_for(entry.job_id)
            queue_key = rq.Queue.redis_queue_namespace_prefix + entry.queue
            args: list[Any] = [
                entry.job_id,
                "1" if entry.at_front else "0",
                "" if entry.ttl is None else entry.ttl,
                self.dedup_ttl_s,
            ]
            for field, value in entry.mapping.items():
                args += [field, value]
            keys = (job_key, queue_key, rq.Queue.redis_queues_keys, ACK_MARKER_KEY, DEDUP_MARKER_PREFIX + entry.job_id)
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        if replicas:
            pipe.execute_command("WAIT", replicas, timeout_ms)
        results = pipe.execute()
        return results[1:] if load else results


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
        while not self._stop.is_set():
            busy = self.pending or self.redis_down
            self._wake.wait(OUTBOX_RETRY_PAUSE_S if busy else OUTBOX_CHECK_INTERVAL_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if not (self.pending or self.outbox.has_entries()):
                    continue
                sent = self._flush(0.0)
            except RedisUnavailable as exc:
                self.redis_down = True
                logger.debug("Outbox flush postponed: %s", str(exc).splitlines()[0])
                continue
            except Exception:
                logger.exception("Outbox flush failed; retrying in %.0fs.", OUTBOX_RETRY_PAUSE_S)
                continue
            if sent is None:
                continue  # another process is sending it
            if self.redis_down or sent:
                logger.warning("Redis is reachable again; sent %d job(s) from outbox %s.", sent, self.outbox.path)
            self.redis_down = False


_flushers: dict[tuple[str, int], OutboxFlusher] = {}
_flushers_lock = threading.Lock()


def _flusher_for(path: Path, enqueuer: Enqueuer, replicas: int, timeout_ms: int) -> OutboxFlusher:
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
    return _flusher_for(
        Path(rq_settings.outbox_path),
        Enqueuer(connection, rq_settings.enqueue_dedup_ttl_s),
        rq_settings.durable_replicas,
        rq_settings.durable_timeout_ms,
    )


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
            self._flusher = _flusher_for(
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
