"""An RQ worker that never exits on a Redis error: it reconnects through Sentinel and goes on.

Stock RQ leaves its work loop on ``TimeoutError`` and on any other error outside the blocking
dequeue (rq #1119, #1653, #1968, #2189), and its scheduler process dies on the first error.
``HAWorker`` keeps RQ's job handling and changes what happens around it:

* the work loop catches Redis errors, logs one line when Redis is lost and one when it is
  back (an ``Outage``), waits as ``reconnect.loop_pause_s`` says and goes on; only SIGTERM/SIGINT
  end it, after the current job;
* every dequeue moves the job to the queue's intermediate list (``redis_ha.rq.dequeue``), so a
  job taken by a worker that then loses its master is found and put back;
* the connection is an ``RQRedis``, so the scheduler process and ``WorkerPool`` workers, which
  RQ builds by cloning it, are Sentinel-aware too; work-horses are forked and inherit it;
* the scheduler process (``redis_ha.rq.scheduler``) rides through Redis errors and is restarted
  if it dies anyway;
* an ``OrphanSweeper`` thread (``redis_ha.rq.orphans``, on the worker's connection) finds jobs
  orphaned by a failover within seconds; a job this worker has taken but not started yet is
  marked as held by it (a holder key), so it is never put back while this worker lives, however
  long it takes to start it, and the worker claims it before running it, so a job put back
  meanwhile is not run here too;
* a work-horse whose completion write fails on a broken connection retries it instead of
  recording a job that succeeded as failed;
* with an outbox configured (``RQ_OUTBOX_PATH``), the worker sends the jobs producers left in it
  once Redis answers, as every producer does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from typing import Any

import redis
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import DequeueTimeout, StopRequested
from rq.utils import as_text, now
from rq.worker import Worker, WorkerStatus

from redis_ha.client import HARedis
from redis_ha.errors import describe_error
from redis_ha.judgement import trouble_kind
from redis_ha.outage import LOOP_SAY_AGAIN_S, Lines, Outage
from redis_ha.reconnect import LOOP_PAUSE_MAX_S, loop_pause_s, until_it_answers
from redis_ha.rq.connection import RQRedis, run_idempotent_script
from redis_ha.rq.defaults import RQSettings, load_rq_settings
from redis_ha.rq.dequeue import WorkerQueue
from redis_ha.rq.flusher import OutboxFlusher, outbox_flusher
from redis_ha.rq.orphans import CLAIM_SCRIPT, RELEASE_SCRIPT, OrphanSweeper, holder_key
from redis_ha.rq.scheduler import HAScheduler

logger = logging.getLogger(__name__)

HA_WORKER_TTL_S = 35
"""Worker key TTL base (RQ adds 60 s); the idle heartbeat comes every TTL - 15 = 20 s."""
HA_JOB_MONITORING_INTERVAL_S = 5
"""How often the worker refreshes its heartbeats while a job runs, seconds (RQ: 30)."""
STILL_FAILING_LOG_INTERVAL_S = LOOP_SAY_AGAIN_S
"""While Redis keeps failing the work loop, the worker says again what the error is this often, seconds."""
SCHEDULER_CHECK_INTERVAL_S = 10.0
"""How often the worker checks that its scheduler process still runs, seconds."""


class HAWorker(Worker):
    """An RQ ``Worker`` for Redis behind Sentinel. Takes an ``HARedis``/``RQRedis`` connection."""

    queue_class = WorkerQueue

    def __init__(
        self,
        queues: Any,
        connection: redis.Redis | None = None,
        metrics: Any = None,
        job_monitoring_interval: int = HA_JOB_MONITORING_INTERVAL_S,
        worker_ttl: int = HA_WORKER_TTL_S,
        *,
        rq_settings: RQSettings | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(connection, HARedis) and not isinstance(connection, RQRedis):
            connection = RQRedis(connection.settings, connection.ha_role)
        if not isinstance(connection, RQRedis):
            raise TypeError("HAWorker needs a redis_ha connection (redis_ha.rq.rq_connection() or redis_ha.connect())")
        self.ha_metrics = metrics
        self.rq_settings = rq_settings  # None: from the RQ_* environment, when the worker starts
        self._outbox_flusher: OutboxFlusher | None = None
        self._outcomes: Any = multiprocessing.Array("q", 2)  # done, failed: written by work-horses
        self._outcomes_seen = (0, 0)
        self._sweeper: OrphanSweeper | None = None
        self._failures = 0  # attempts of the work loop in a row that Redis failed
        self._scheduler_checked_at = 0.0
        self._held: set[str] = set()  # job ids taken off a queue and not finished with (main process)
        self.ha_connection: RQRedis = connection
        super().__init__(
            queues,
            connection=connection,
            job_monitoring_interval=job_monitoring_interval,
            worker_ttl=worker_ttl,
            **kwargs,
        )

    # --- connection -------------------------------------------------------------------------

    def _set_connection(self, connection: redis.Redis) -> redis.Redis:
        # RQ raises the socket timeout to cover its blocking dequeue. redis_ha already gives a
        # blocking command its own timeout plus the socket timeout; raising the socket timeout
        # for every command would make a frozen master hang the worker for that long.
        return connection

    # --- the work loop ------------------------------------------------------------------------

    def work(  # noqa: PLR0917 - RQ's signature
        self,
        burst: bool = False,
        logging_level: str | None = None,
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
        max_jobs: int | None = None,
        max_idle_time: int | None = None,
        with_scheduler: bool = True,
        dequeue_strategy: Any = "default",
    ) -> bool:
        self._dequeue_strategy = dequeue_strategy
        completed = 0
        self._install_signal_handlers()
        try:
            self._until_redis_answers(lambda: self.bootstrap(logging_level, date_format, log_format))
            self._sweeper = OrphanSweeper(
                self.ha_connection,  # thread-safe, as redis-py's pools are
                self.queue_names(),
                self.name,
                lambda: list(self.executions),
                on_orphan=self._count_orphan,
                held=lambda: list(self._held),
            )
            self._sweeper.start()
            rq_settings = self.rq_settings if self.rq_settings is not None else load_rq_settings()
            self._outbox_flusher = outbox_flusher(self.ha_connection, rq_settings)
            if with_scheduler:
                self._until_redis_answers(lambda: self._start_scheduler(burst, logging_level, date_format, log_format))
            while True:
                try:
                    if self._stop_requested:
                        logger.info("Worker %s: stopping on request.", self.name)
                        break
                    self.check_for_suspension(burst)
                    if self.should_run_maintenance_tasks:
                        self.run_maintenance_tasks()
                    if with_scheduler and not burst:
                        self._keep_scheduler_alive()
                    result = self.dequeue_job_and_maintain_ttl(None if burst else self.dequeue_timeout, max_idle_time)
                    self._redis_back()
                    if result is None:
                        break
                    self._run_held_job(*result)
                    self._count_outcomes()
                    self.heartbeat()
                    completed += 1
                    if max_jobs is not None and completed >= max_jobs:
                        break
                except (redis.RedisError, OSError) as exc:
                    self._count_outcomes()
                    self._redis_trouble(exc)
                    time.sleep(loop_pause_s(self._failures))
                except (StopRequested, SystemExit):
                    raise
                except Exception:
                    logger.exception("Worker %s: unexpected error in the work loop; carrying on.", self.name)
                    time.sleep(LOOP_PAUSE_MAX_S)
        except StopRequested:
            logger.info("Worker %s: stopping on request.", self.name)
        finally:
            if self._sweeper is not None:
                self._sweeper.stop()
            self._ha_teardown()
        return bool(completed)

    @functools.cached_property
    def _outage(self) -> Outage:
        """Whether Redis fails the work loop now; says so when it starts, changes kind, every
        ``STILL_FAILING_LOG_INTERVAL_S`` while it lasts, and when it ends."""
        name = self.name.replace("{", "{{").replace("}", "}}")
        return Outage(
            logger,
            Lines(
                lost={
                    "lost": f"Worker {name} lost Redis ({{error}}); reconnecting through Sentinel.",
                    "refused": f"Worker {name}: Redis refuses the worker's commands ({{error}}); retrying, and "
                    "saying so every {say_again_s:g}s until it stops.",
                },
                still=f"Worker {name}: Redis still failing after {{seconds:.0f}}s, {{attempts}} attempts ({{error}}).",
                back=f"Worker {name} reached Redis again after {{seconds:.1f}}s; working.",
            ),
            say_again_s=lambda: STILL_FAILING_LOG_INTERVAL_S,
        )

    def _until_redis_answers(self, step: Any) -> None:
        until_it_answers(step, on_failure=self._redis_trouble, on_success=self._redis_back)

    def _redis_trouble(self, exc: BaseException) -> None:
        """Tell the outage (it logs) and count a reconnect when it starts; the caller pauses."""
        self._failures += 1
        kind = trouble_kind(exc)
        level = logging.WARNING if kind == "lost" else logging.ERROR
        if self._outage.failed(describe_error(exc), kind=kind, level=level) and self.ha_metrics is not None:
            self.ha_metrics.reconnects.inc()

    def _redis_back(self) -> None:
        if self._outage.recovered() is not None and self._outbox_flusher is not None:
            self._outbox_flusher.wake()
        self._failures = 0

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's dequeue without its own reconnect loop (whose pauses grow to 60 s): errors go up to ``work``."""
        qnames = ",".join(self.queue_names())
        self.set_state(WorkerStatus.IDLE)
        self.procline("Listening on " + qnames)
        idle_since = now()
        idle_left = max_idle_time
        while True:
            self.heartbeat()
            if self.should_run_maintenance_tasks:
                self.run_maintenance_tasks()
            if timeout is not None and idle_left is not None:
                timeout = min(timeout, idle_left)
            try:
                result = self.queue_class.dequeue_any(
                    self._ordered_queues,
                    timeout,
                    connection=self.connection,
                    job_class=self.job_class,
                    serializer=self.serializer,
                    death_penalty_class=self.death_penalty_class,
                )
            except DequeueTimeout:
                if max_idle_time is not None:
                    idle_left = int(max_idle_time - (now() - idle_since).total_seconds())
                    if idle_left <= 0:
                        return None
                continue
            if result is not None:
                job, queue = result
                self._hold(job)
                self.reorder_queues(reference_queue=queue)
                logger.debug("Worker %s: %s: %s", self.name, queue.name, job.id)
            return result

    # --- holding a job between dequeue and start ------------------------------------------------

    @property
    def _holder_ttl_s(self) -> int:
        # As long as this worker's registration lives (RQ's heartbeat TTL): the key outlives the
        # worker, so a job is never taken for abandoned while the worker that holds it is alive.
        return int(self.worker_ttl) + 60

    def _hold(self, job: Any) -> None:
        """Record in Redis that this worker took ``job`` (in memory first: see ``orphans.stuck_reason``)."""
        self._held.add(job.id)
        try:
            self.connection.set(holder_key(job.id), self.name, ex=self._holder_ttl_s)
        except BaseException:
            self._held.discard(job.id)
            raise

    def _claim(self, job: Any, queue: Any) -> bool:
        """True when ``job`` is still this worker's to run: not put back on its queue meanwhile."""
        keys = [holder_key(job.id), queue.intermediate_queue_key]
        claimed = run_idempotent_script(self.ha_connection, CLAIM_SCRIPT, keys, [job.id, self.name, self._holder_ttl_s])
        return bool(claimed)

    def _run_held_job(self, job: Any, queue: Any) -> None:
        try:
            self.execute_job(job, queue)
        except BaseException:
            self._held.discard(job.id)  # the orphan check puts it back if it never started
            raise
        self._let_go(job)

    def _let_go(self, job: Any) -> None:
        self._held.discard(job.id)
        try:
            run_idempotent_script(self.ha_connection, RELEASE_SCRIPT, [holder_key(job.id)], [self.name])
        except redis.RedisError as exc:  # the key expires on its own
            logger.debug("Worker %s could not drop its hold on job %s (%s).", self.name, job.id, describe_error(exc))

    def execute_job(self, job: Any, queue: Any) -> None:
        if not self._claim(job, queue):
            logger.warning(
                "Worker %s: job %s was put back on queue '%s' while this worker held it (it was taken for gone); "
                "leaving it to the worker that has it now instead of running it twice.",
                self.name,
                job.id,
                queue.name,
            )
            return
        super().execute_job(job, queue)

    # --- robustness around job execution -------------------------------------------------------

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        try:
            super().maintain_heartbeats(job, execution)
        except redis.RedisError as exc:
            # The job runs on; the next heartbeat (or the orphan check) sorts out the record.
            logger.warning(
                "Worker %s could not refresh heartbeats for job %s (%s).", self.name, job.id, describe_error(exc)
            )

    def prepare_job_execution(self, job: Any, remove_from_intermediate_queue: bool = False) -> None:
        # Every dequeue here goes through the intermediate list, so always take the job off it.
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)

    def handle_job_success(self, job: Any, queue: Any, started_job_registry: Any, execution: Any) -> None:
        """Retry the completion write across a failover instead of failing a job that succeeded."""
        deadline = time.monotonic() + self.ha_connection.settings.retry_deadline_s
        failures = 0
        while True:
            try:
                super().handle_job_success(job, queue, started_job_registry, execution)
                return
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise
                failures += 1
                logger.debug("Completion of job %s not written yet (%s); retrying.", job.id, describe_error(exc))
                time.sleep(loop_pause_s(failures))

    def main_work_horse(self, job: Any, queue: Any) -> None:
        # A work-horse lives for one job. It needs no +switch-master watcher threads of its own
        # (two sentinel subscriptions per job): the worker's watcher follows failovers, and the
        # horse's retry loop re-resolves the master through Sentinel on any error anyway.
        self.ha_connection.ha_pool.disable_watcher()
        super().main_work_horse(job, queue)

    def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
        ok: bool = super().perform_job(job, queue, execution)
        with self._outcomes.get_lock():
            self._outcomes[0 if ok else 1] += 1
        return ok

    def _count_outcomes(self) -> None:
        with self._outcomes.get_lock():
            done, failed = self._outcomes[0], self._outcomes[1]
        seen_done, seen_failed = self._outcomes_seen
        self._outcomes_seen = (done, failed)
        if self.ha_metrics is not None:
            self.ha_metrics.jobs_done.inc(done - seen_done)
            self.ha_metrics.jobs_failed.inc(failed - seen_failed)

    def _count_orphan(self, job_id: str) -> None:
        if self.ha_metrics is not None:
            self.ha_metrics.orphans.inc()

    @property
    def outcome_counts(self) -> tuple[int, int]:
        """Jobs done and failed by this worker's work-horses since it started."""
        with self._outcomes.get_lock():
            return int(self._outcomes[0]), int(self._outcomes[1])

    # --- registration, signals, scheduler, teardown ------------------------------------------------

    def register_birth(self) -> None:
        # A retried bootstrap finds its own earlier registration: that is not another worker.
        key = self.key
        if self.connection.exists(key) and not self.connection.hexists(key, "death"):
            recorded = self.connection.hmget(key, ["pid", "hostname"])
            if [as_text(v) if v is not None else None for v in recorded] == [str(os.getpid()), self.hostname]:
                self.connection.delete(key)
        super().register_birth()

    def set_shutdown_requested_date(self) -> None:
        # Called from the signal handler: never let a Redis outage turn a stop request into a crash.
        with contextlib.suppress(redis.RedisError):
            super().set_shutdown_requested_date()

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        self.scheduler = HAScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else logging.INFO,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if self.scheduler.acquired_locks:
            if burst:
                try:
                    self.scheduler.register_birth()
                    self.scheduler.enqueue_scheduled_jobs()
                finally:
                    self.scheduler.release_locks()
                    self.scheduler.register_death()
            else:
                self.scheduler.start()

    def _keep_scheduler_alive(self) -> None:
        """Take over scheduling if no scheduler holds the lock (ours died, or another worker's did)."""
        if time.monotonic() - self._scheduler_checked_at < SCHEDULER_CHECK_INTERVAL_S:
            return
        self._scheduler_checked_at = time.monotonic()
        scheduler = self.scheduler
        if scheduler is None:
            self._start_scheduler()
        elif scheduler._process is None or not scheduler._process.is_alive():
            scheduler.acquire_locks(auto_start=True)

    def _ha_teardown(self) -> None:
        if self.scheduler is not None and self.scheduler._process is not None:
            with contextlib.suppress(OSError):
                self.stop_scheduler()
        try:
            self.register_death()
        except redis.RedisError as exc:
            logger.warning("Worker %s could not record its stop in Redis (%s).", self.name, describe_error(exc))
        with contextlib.suppress(redis.RedisError, AttributeError):
            self.unsubscribe()

    def teardown(self) -> None:
        self._ha_teardown()


def make_worker(queue_names: Sequence[str], connection: RQRedis, **kwargs: Any) -> HAWorker:
    """An ``HAWorker`` on ``queue_names`` (highest priority first)."""
    queues = [WorkerQueue(name, connection=connection) for name in queue_names]
    return HAWorker(queues, connection=connection, **kwargs)
