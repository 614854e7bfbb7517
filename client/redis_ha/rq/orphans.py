"""Finding jobs orphaned by a failover within seconds, not after RQ's heartbeat TTL and 10-minute cleanup.

A failover can leave a job recorded as *started* although no work-horse runs it: the worker's
completion (or its whole start) was written to the old master and never replicated. RQ only
notices when the execution's heartbeat expires (60 s or more) and its maintenance runs (every
10 minutes). Here every worker checks every few seconds:

* its own executions: a started-registry entry naming this worker that the worker is not
  running (it knows what it runs) is orphaned, at once;
* other workers' executions: an entry whose worker is gone (no key, or dead) and whose last
  heartbeat is older than ``DEAD_WORKER_GRACE_S`` is orphaned;
* the intermediate list (jobs moved off a queue by a worker that has not started them yet): each
  such job has a holder key naming the worker that took it (``HOLDER_KEY_PREFIX``), written right
  after the dequeue. The job is put back on its queue only when that worker is known gone (its
  registration expired: no heartbeat for the worker's TTL) or, for this worker's own jobs, when
  it no longer holds the job; however long a live holder takes to start it. A job with no holder
  key (the worker died between the dequeue and writing it, or the key was lost in a failover) is
  put back once seen for ``STUCK_GRACE_S``.

Before running a job the worker claims it (``CLAIM_SCRIPT``): if the job was put back meanwhile
the claim fails and the worker leaves it to whoever has it now. Claim and put-back are scripts
that each check the holder key, so exactly one of them wins.

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
from redis_ha.errors import describe_error
from redis_ha.outage import LOOP_SAY_AGAIN_S, Lines, Outage
from redis_ha.rq.connection import run_idempotent_script

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 3.0
"""How often each worker looks for orphaned jobs, seconds (also between attempts while Redis is away)."""
DEAD_WORKER_GRACE_S = 20.0
"""An execution of a worker that is gone counts as orphaned once its heartbeat is this old, seconds."""
STUCK_GRACE_S = 10.0
"""A job in a queue's intermediate list with no holder key, not started, is put back after this long, seconds."""
SWEEP_LOCK_MS = 2500
"""One worker at a time hands orphans to RQ's cleanup per queue; the lock lives this long, ms."""

HOLDER_KEY_PREFIX = "redis-ha:rq:holder:"
"""``<prefix><job id>``: the worker that took the job off its queue and has not started it yet
(``<name>``, or ``<name>|claimed`` once it is about to run it)."""
CLAIMED_SUFFIX = "|claimed"

# KEYS: intermediate list, queue, holder key. ARGV: job id, the holder value seen ("" = none).
# Put a job back on its queue only if it is still in the intermediate list and its holder is the
# one the decision was made on (atomic, so repeating is harmless).
REQUEUE_STUCK_SCRIPT = """
if (redis.call('GET', KEYS[3]) or '') ~= ARGV[2] then return 0 end
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  redis.call('DEL', KEYS[3])
  return 1
end
return 0
"""

# KEYS: holder key, intermediate list. ARGV: job id, worker name, holder key TTL seconds.
# 1: the job is still this worker's to run, and now marked as claimed; 0: it was put back meanwhile.
CLAIM_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[2] and holder ~= ARGV[2] .. 'CLAIMED' then return 0 end
if not redis.call('LPOS', KEYS[2], ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2] .. 'CLAIMED', 'EX', ARGV[3])
return 1
""".replace("CLAIMED", CLAIMED_SUFFIX)

# KEYS: holder key. ARGV: worker name. Deletes the key only while it names this worker.
RELEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or holder == ARGV[1] .. 'CLAIMED' then return redis.call('DEL', KEYS[1]) end
return 0
""".replace("CLAIMED", CLAIMED_SUFFIX)


def holder_key(job_id: str) -> str:
    return HOLDER_KEY_PREFIX + job_id


def holder_name(value: str) -> str:
    """The worker named by a holder key's value."""
    return value.removesuffix(CLAIMED_SUFFIX)


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


def stuck_reason(
    job_id: str,
    queue: str,
    job_status: str | None,
    seen_for_s: float,
    *,
    holder: str = "",
    holder_alive: bool = False,
    me: str = "",
    held: frozenset[str] = frozenset(),
) -> str | None:
    """Why a job in the intermediate list should go back on its queue, or None.

    ``holder``: the worker its holder key names ("" = no key); ``holder_alive``: that worker's
    registration is there and records no death; ``held``: the job ids this worker (``me``) holds
    now, read *after* Redis was (the worker adds a job to memory before writing its holder key).
    """
    if job_status != JobStatus.QUEUED.value:
        return None
    if holder and holder == me:
        if job_id in held:
            return None
        return f"job {job_id} was taken off queue '{queue}' by this worker, which let go of it without starting it"
    if holder:
        if holder_alive:
            return None  # however long it takes: a live worker starts its job, or lets go of it
        return (
            f"job {job_id} was taken off queue '{queue}' by worker {holder}, which is gone (no heartbeat "
            "within its TTL) and never started it"
        )
    if seen_for_s < STUCK_GRACE_S:
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
        *,
        held: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.connection = connection
        self.queue_names = list(queue_names)
        self.worker_name = worker_name
        self.running = running
        self.on_orphan = on_orphan
        self.held = held  # job ids this worker has taken off a queue and not finished with
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: dict[tuple[str, str], float] = {}
        self._reported: set[str] = set()
        self._outage = Outage(
            logger,
            Lines(
                lost="Orphaned-job check failed ({error}); trying again.",
                still="Orphaned-job check still failing after {seconds:.0f}s ({error}).",
                back="Orphaned-job check works again after {seconds:.0f}s.",
            ),
            say_again_s=LOOP_SAY_AGAIN_S,
        )

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
                self._outage.recovered()
            except redis.RedisError as exc:
                self._outage.failed(describe_error(exc))
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
                pipe.get(holder_key(job_id))
            replies = pipe.execute()
        statuses = [as_text(s) if s else None for s in replies[0::2]]
        holders = [as_text(h) if h else "" for h in replies[1::2]]
        alive = self._alive(sorted({holder_name(h) for h in holders if h and holder_name(h) != self.worker_name}))
        held = frozenset(self.held())
        for job_id, status, holder in zip(job_ids, statuses, holders, strict=True):
            first = self._first_seen.setdefault((queue, job_id), now)
            if status is None or status in (JobStatus.FINISHED.value, JobStatus.FAILED.value):
                if now - first >= STUCK_GRACE_S:
                    conn.lrem(intermediate_key, 1, job_id)
                continue
            name = holder_name(holder)
            reason = stuck_reason(
                job_id,
                queue,
                status,
                now - first,
                holder=name,
                holder_alive=alive.get(name, False),
                me=self.worker_name,
                held=held,
            )
            if reason is None:
                continue
            moved = run_idempotent_script(
                conn, REQUEUE_STUCK_SCRIPT, [intermediate_key, queue_key, holder_key(job_id)], [job_id, holder]
            )
            if moved:
                logger.warning("Stuck job put back: %s.", reason)
                if self.on_orphan is not None:
                    self.on_orphan(job_id)
            self._first_seen.pop((queue, job_id), None)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
