"""Finding jobs orphaned by a failover within seconds, not after RQ's heartbeat TTL and 10-minute cleanup.

A failover can leave a job recorded as *started* although no work-horse runs it: the worker's
completion (or its whole start) was written to the old master and never replicated. RQ only
notices when the execution's heartbeat expires (60 s or more) and its maintenance runs (every
10 minutes). Here every worker checks every few seconds:

* its own executions: a started-registry entry naming this worker that the worker is not
  running (it knows what it runs) is orphaned, at once;
* other workers' executions: an entry whose worker is gone (no key, or dead) and whose last
  heartbeat is older than ``DEAD_WORKER_GRACE_S`` is orphaned;
* the intermediate list (jobs moved off a queue by a worker that never started them): an entry
  seen for ``STUCK_GRACE_S`` without being started is put back on its queue.

An orphaned execution is not handled here: its registry score is set to 0 (expired), and RQ's
own ``StartedJobRegistry.cleanup`` then applies the job's retry policy (requeue or schedule
it while it has retries left, else fail it with ``AbandonedJobError``), exactly as for any
abandoned job. The decisions are pure functions returning a reason sentence or None.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.utils import as_text

from redis_ha.client import HARedis
from redis_ha.rq.connection import run_idempotent_script

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 3.0
"""How often each worker looks for orphaned jobs, seconds."""
DEAD_WORKER_GRACE_S = 20.0
"""An execution of a worker that is gone counts as orphaned once its heartbeat is this old, seconds."""
STUCK_GRACE_S = 10.0
"""A job left in a queue's intermediate list, not started, is put back after this long, seconds."""
SWEEP_LOCK_MS = 2500
"""One worker at a time hands orphans to RQ's cleanup per queue; the lock lives this long, ms."""

# Put a job back on its queue only if it is still in the intermediate list (atomic, so repeating is harmless).
REQUEUE_STUCK_SCRIPT = """
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class ExecutionView:
    """What Redis says about one started-registry entry."""

    queue: str
    job_id: str
    execution_id: str
    job_status: str | None  # None: the job hash is gone
    worker_name: str  # "": the execution hash is gone
    worker_alive: bool
    heartbeat_age_s: float | None  # None: unknown


def orphan_reason(view: ExecutionView, *, me: str, running: frozenset[str]) -> str | None:
    """Why this execution is orphaned (a sentence for the log), or None if it should be left alone.

    ``running`` holds the execution ids this worker (``me``) is running now, read *after*
    Redis was: RQ adds an execution to memory before writing it and removes it only after the
    work-horse deleted it in Redis, so an entry of ours missing from memory was lost in transit.
    """
    if view.job_status != JobStatus.STARTED.value:
        return None
    if view.worker_name == me:
        if view.execution_id in running:
            return None
        return (
            f"job {view.job_id} on queue '{view.queue}' is recorded as running on this worker, which is not "
            "running it: its completion or start was lost in a failover"
        )
    if view.worker_alive:
        return None
    if view.heartbeat_age_s is not None and view.heartbeat_age_s < DEAD_WORKER_GRACE_S:
        return None
    who = f"worker {view.worker_name}" if view.worker_name else "a worker whose execution record is gone"
    return f"job {view.job_id} on queue '{view.queue}' was started by {who}, which no longer runs"


def stuck_reason(job_id: str, queue: str, job_status: str | None, seen_for_s: float) -> str | None:
    """Why a job in the intermediate list should go back on its queue, or None."""
    if job_status != JobStatus.QUEUED.value or seen_for_s < STUCK_GRACE_S:
        return None
    return (
        f"job {job_id} was taken off queue '{queue}' {seen_for_s:.0f}s ago by a worker that never started it "
        "(lost in a failover)"
    )


class OrphanSweeper:
    """A daemon thread in the worker's main process, with a connection of its own."""

    def __init__(
        self,
        connection: HARedis,
        queue_names: Iterable[str],
        worker_name: str,
        running: Callable[[], Iterable[str]],
        on_orphan: Callable[[str], None] | None = None,
    ) -> None:
        self.connection = connection
        self.queue_names = list(queue_names)
        self.worker_name = worker_name
        self.running = running
        self.on_orphan = on_orphan
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: dict[tuple[str, str], float] = {}
        self._reported: set[str] = set()
        self._failing = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="redis-ha-orphans", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=SWEEP_INTERVAL_S * 2)

    def _run(self) -> None:
        while not self._stop.wait(SWEEP_INTERVAL_S):
            try:
                self.sweep()
                self._failing = False
            except redis.RedisError as exc:
                if not self._failing:
                    logger.warning("Orphaned-job check failed (%s); trying again.", str(exc).splitlines()[0])
                self._failing = True
            except Exception:
                logger.exception("Orphaned-job check failed unexpectedly; trying again.")

    def sweep(self) -> int:
        """One pass over every queue; returns how many orphans were handed to RQ's cleanup."""
        handed = 0
        for name in self.queue_names:
            handed += self._sweep_started(name)
            self._sweep_intermediate(name)
        return handed

    def _sweep_started(self, queue: str) -> int:
        conn = self.connection
        registry = StartedJobRegistry(queue, connection=conn)
        entries = [_text(m) for m in conn.zrange(registry.key, 0, -1)]
        views = self._observe(queue, entries)
        running = frozenset(self.running())
        orphans = []
        for view in views:
            reason = orphan_reason(view, me=self.worker_name, running=running)
            if reason is None:
                continue
            composite = f"{view.job_id}:{view.execution_id}"
            orphans.append(composite)
            if composite not in self._reported:
                self._reported.add(composite)
                logger.warning("Orphaned job found: %s; applying its retry policy now.", reason)
                if self.on_orphan is not None:
                    self.on_orphan(view.job_id)
        if orphans:
            # Score 0 = expired: RQ's cleanup below handles them like any abandoned job.
            conn.zadd(registry.key, dict.fromkeys(orphans, 0), xx=True)
        if orphans and conn.set(f"redis-ha:rq:orphan-sweep:{queue}", self.worker_name, nx=True, px=SWEEP_LOCK_MS):
            registry.cleanup()
        if len(self._reported) > 10_000:
            self._reported.clear()
        return len(orphans)

    def _observe(self, queue: str, entries: list[str]) -> list[ExecutionView]:
        if not entries:
            return []
        conn = self.connection
        parsed = [e.split(":", 1) for e in entries if ":" in e]
        with conn.pipeline(transaction=False) as pipe:
            for job_id, execution_id in parsed:
                pipe.hget(Job.key_for(job_id), "status")
                pipe.hmget(f"rq:execution:{job_id}:{execution_id}", ["worker_name", "last_heartbeat"])
            replies = pipe.execute()
        facts = []
        workers: set[str] = set()
        for index, (job_id, execution_id) in enumerate(parsed):
            status = replies[2 * index]
            worker, heartbeat = replies[2 * index + 1]
            # An execution whose record is gone (expired, or lost in a failover) has no worker.
            worker_name = as_text(worker) if worker is not None else ""
            if worker_name:
                workers.add(worker_name)
            age = time.time() - float(heartbeat) if heartbeat else None
            facts.append((job_id, execution_id, as_text(status) if status else None, worker_name, age))
        alive = self._alive(sorted(workers))
        return [
            ExecutionView(queue, job_id, execution_id, status, worker_name, alive.get(worker_name, False), age)
            for job_id, execution_id, status, worker_name, age in facts
        ]

    def _alive(self, workers: list[str]) -> dict[str, bool]:
        if not workers:
            return {}
        with self.connection.pipeline(transaction=False) as pipe:
            for name in workers:
                pipe.exists(f"rq:worker:{name}")
                pipe.hexists(f"rq:worker:{name}", "death")
            replies = pipe.execute()
        return {name: bool(replies[2 * i]) and not replies[2 * i + 1] for i, name in enumerate(workers)}

    def _sweep_intermediate(self, queue: str) -> None:
        conn = self.connection
        queue_key = f"rq:queue:{queue}"
        intermediate_key = f"{queue_key}:intermediate"
        job_ids = [_text(j) for j in conn.lrange(intermediate_key, 0, -1)]
        now = time.monotonic()
        seen = {(queue, j) for j in job_ids}
        for key in [k for k in self._first_seen if k[0] == queue and k not in seen]:
            del self._first_seen[key]
        if not job_ids:
            return
        with conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(Job.key_for(job_id), "status")
            statuses = [as_text(s) if s else None for s in pipe.execute()]
        for job_id, status in zip(job_ids, statuses, strict=True):
            first = self._first_seen.setdefault((queue, job_id), now)
            if status is None or status in (JobStatus.FINISHED.value, JobStatus.FAILED.value):
                if now - first >= STUCK_GRACE_S:
                    conn.lrem(intermediate_key, 1, job_id)
                continue
            reason = stuck_reason(job_id, queue, status, now - first)
            if reason is None:
                continue
            moved = run_idempotent_script(conn, REQUEUE_STUCK_SCRIPT, [intermediate_key, queue_key], [job_id])
            if moved:
                logger.warning("Stuck job put back: %s.", reason)
                if self.on_orphan is not None:
                    self.on_orphan(job_id)
            self._first_seen.pop((queue, job_id), None)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
