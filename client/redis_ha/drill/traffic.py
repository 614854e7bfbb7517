"""The drill's traffic: durable enqueues at a set rate, real workers, a write probe, all recorded.

``redis-ha drill traffic --out DIR`` runs on an app host (or the machine running the drill) with
the app's ``REDIS_*`` environment. It

* starts ``--workers`` real ``redis-ha worker`` processes on a queue of its own, and starts one
  again if it exits (counted as a worker restart);
* enqueues ``redis_ha.drill.jobs.record`` at ``--rate`` jobs per second from ``--producers``
  threads with ``durable="all"`` (an acknowledged job is on every healthy replica), recording
  every acknowledgement and every exception an enqueue raised;
* writes a small key every ``--probe-interval`` seconds with a short deadline, recording whether
  and when each write got through: the "seconds without a writable master";
* on SIGTERM/SIGINT or after ``--duration`` stops producing, waits (bounded) until every
  acknowledged job ran, stops the workers by pid, and writes ``DIR/traffic.json``.

It touches ``DIR/ready`` once a job has been acknowledged and run, which is when the orchestrator
may start breaking things.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis

from redis_ha.client import HARedis
from redis_ha.config import format_address, load_settings
from redis_ha.drill.records import (
    EXECUTIONS_FILE,
    READY_FILE,
    TRAFFIC_FILE,
    Ack,
    Event,
    Probe,
    ProducerError,
    TrafficRecord,
    read_executions,
    write_json,
)
from redis_ha.errors import describe_error

logger = logging.getLogger(__name__)

DEFAULT_RATE_PER_S = 20.0
DEFAULT_DURATION_S = 300.0
DEFAULT_WORKERS = 2
DEFAULT_PRODUCERS = 2
DEFAULT_DRAIN_TIMEOUT_S = 60.0
DEFAULT_PROBE_INTERVAL_S = 0.1
PROBE_DEADLINE_S = 1.0
"""How long one probe write may retry before it counts as failed, seconds."""
PROBE_SOCKET_TIMEOUT_S = 0.5
PROBE_KEY = "redis-ha:drill:probe"
PROBE_TTL_MS = 60_000
PROBE_ERROR_DETAIL_CHARS = 160
SUPERVISE_INTERVAL_S = 0.5
WORKER_STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class TrafficOptions:
    out_dir: Path
    queue: str
    rate: float = DEFAULT_RATE_PER_S
    duration_s: float = DEFAULT_DURATION_S
    workers: int = DEFAULT_WORKERS
    producers: int = DEFAULT_PRODUCERS
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    probe_interval_s: float = DEFAULT_PROBE_INTERVAL_S


def probe_error(exc: BaseException) -> str:
    """A failed probe write in one line: the error, and the last attempt behind it (NOREPLICAS, a timeout ...)."""
    text = describe_error(exc)
    attempts = getattr(exc, "attempts", None)
    if attempts:
        text += f" (last attempt: {str(attempts[-1])[:PROBE_ERROR_DETAIL_CHARS]})"
    return text


class Traffic:
    """One bounded run of producers, workers and the probe. ``run()`` returns what was recorded."""

    def __init__(self, options: TrafficOptions, env: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.env = dict(os.environ if env is None else env)
        self.finish = threading.Event()
        """Set to stop producing and drain (``request_finish``)."""
        self.stop = threading.Event()
        """Set to stop everything now, drained or not."""
        self.producing = threading.Event()
        self.executions_path = options.out_dir / EXECUTIONS_FILE
        self.record = TrafficRecord(
            started=time.time(),
            ended=0.0,
            rate=options.rate,
            queue=options.queue,
            probe_interval_s=options.probe_interval_s,
        )
        self._workers: list[subprocess.Popen[bytes]] = []
        self._worker_serial = 0

    def request_finish(self) -> None:
        """First call: stop producing, then drain. Second call: stop draining too."""
        if self.finish.is_set():
            logger.warning("Asked again to stop: not waiting for the remaining jobs.")
            self.stop.set()
        self.finish.set()

    # Workers.

    def _spawn_worker(self, slot: int) -> subprocess.Popen[bytes]:
        self._worker_serial += 1
        name = f"drill-{self.options.queue}-{self._worker_serial}"
        log = (self.options.out_dir / f"worker-{slot}.log").open("ab")
        with log:
            process = subprocess.Popen(
                [sys.executable, "-m", "redis_ha.cli", "worker", "--name", name, self.options.queue],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C reaches the drill, which stops workers itself
            )
        logger.info("Started worker %s (pid %d).", name, process.pid)
        return process

    def _supervise(self) -> None:
        """Start a worker again whenever one exits before the end (a worker restart)."""
        for slot, process in enumerate(self._workers):
            code = process.poll()
            if code is None or self.stop.is_set():
                continue
            self.record.worker_restarts += 1
            detail = f"worker pid {process.pid} exited with code {code}; started it again"
            self.record.events.append(Event(time.time(), "worker-restart", detail))
            logger.warning("Drill %s.", detail)
            self._workers[slot] = self._spawn_worker(slot)

    def _stop_workers(self) -> None:
        for process in self._workers:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        for process in self._workers:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Worker pid %d ignored SIGTERM for %.0f s; killing it.", process.pid, WORKER_STOP_TIMEOUT_S
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
                process.wait()

    # Producers and probe.

    def _produce(self, rate: float) -> None:
        from redis_ha.drill import jobs  # noqa: PLC0415
        from redis_ha.rq import Queue, RQRedis  # noqa: PLC0415

        queue = Queue(self.options.queue, connection=RQRedis(load_settings(env=self.env)), durable="all")
        interval = 1.0 / rate
        next_at = time.monotonic()
        while self.producing.is_set():
            job_id = f"drill-{uuid.uuid4().hex}"
            submitted = time.time()
            try:
                queue.enqueue(jobs.record, str(self.executions_path), job_id=job_id)
                self.record.acks.append(Ack(job_id, submitted, time.time()))
            except Exception as exc:  # what an application would have seen is what we record
                self.record.errors.append(ProducerError(time.time(), job_id, describe_error(exc)))
            next_at = max(next_at + interval, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _probe(self) -> None:
        settings = load_settings(
            env=self.env,
            retry_deadline_s=PROBE_DEADLINE_S,
            socket_timeout_s=PROBE_SOCKET_TIMEOUT_S,
            connect_timeout_s=PROBE_SOCKET_TIMEOUT_S,
        )
        client = HARedis(settings)
        try:
            while not self.stop.is_set():
                sent = time.time()
                try:
                    client.set(PROBE_KEY, f"{sent:.3f}", px=PROBE_TTL_MS)
                    probe = Probe(sent, time.time(), True, format_address(client.master_address))
                except redis.RedisError as exc:
                    probe = Probe(sent, time.time(), False, "", probe_error(exc))
                self.record.probes.append(probe)
                self.stop.wait(max(0.0, self.options.probe_interval_s - (time.time() - sent)))
        finally:
            client.close()

    def _delete_queue(self) -> None:
        """Remove the drill's queue from Redis once every job ran: a drill leaves no queue behind.

        Only after a full drain: jobs still waiting are evidence an operator may want to look at.
        """
        from redis_ha.rq import Queue, RQRedis  # noqa: PLC0415

        try:
            connection = RQRedis(load_settings(env=self.env))
            try:
                Queue(self.options.queue, connection=connection).delete(delete_jobs=True)
            finally:
                connection.close()
        except redis.RedisError as exc:
            logger.warning("Could not delete the drill queue %s: %s", self.options.queue, exc)
        else:
            logger.info("Deleted the drill queue %s.", self.options.queue)

    # The run.

    def _acked_all_ran(self) -> bool:
        ran = {e.job_id for e in read_executions(self.executions_path)}
        return {a.job_id for a in self.record.acks} <= ran

    def run(self) -> TrafficRecord:
        options = self.options
        options.out_dir.mkdir(parents=True, exist_ok=True)
        (options.out_dir / READY_FILE).unlink(missing_ok=True)
        deadline = time.monotonic() + options.duration_s
        threads = [threading.Thread(target=self._probe, name="drill-probe", daemon=True)]
        self.producing.set()
        threads += [
            threading.Thread(target=self._produce, args=(options.rate / options.producers,), daemon=True)
            for _ in range(options.producers)
        ]
        logger.info(
            "Drill traffic: %g jobs/s from %d producer(s) to queue %s, %d worker(s), at most %.0f s.",
            options.rate, options.producers, options.queue, options.workers, options.duration_s,
        )  # fmt: skip
        try:
            self._workers = [self._spawn_worker(slot) for slot in range(options.workers)]
            for thread in threads:
                thread.start()
            ready = False
            while not self.finish.is_set() and not self.stop.is_set() and time.monotonic() < deadline:
                self._supervise()
                if not ready and self.record.acks and self.executions_path.exists():
                    (options.out_dir / READY_FILE).write_text(f"{time.time():.3f}\n")
                    logger.info("Drill traffic is flowing.")
                    ready = True
                self.finish.wait(SUPERVISE_INTERVAL_S)
            self.producing.clear()
            for thread in threads[1:]:
                thread.join()
            self.record.events.append(Event(time.time(), "producers-stopped", f"{len(self.record.acks)} acknowledged"))
            logger.info(
                "Producers stopped; waiting up to %.0f s for every acknowledged job to run.", options.drain_timeout_s
            )
            drain_deadline = time.monotonic() + options.drain_timeout_s
            while not self.stop.is_set() and not self._acked_all_ran() and time.monotonic() < drain_deadline:
                self._supervise()
                time.sleep(SUPERVISE_INTERVAL_S)
            self.record.drained = self._acked_all_ran()
        finally:
            self.producing.clear()
            self.stop.set()
            self._stop_workers()
            threads[0].join(timeout=5.0)
            self.record.ended = time.time()
            self.record.executions = read_executions(self.executions_path)
            write_json(options.out_dir / TRAFFIC_FILE, self.record.to_json())
            if self.record.drained:
                self._delete_queue()
        logger.info(
            "Drill traffic done: %d acknowledged, %d error(s), %d execution(s), results in %s.",
            len(self.record.acks), len(self.record.errors), len(self.record.executions), options.out_dir / TRAFFIC_FILE,
        )  # fmt: skip
        return self.record
