"""Running the real ``redis-ha worker`` CLI as a subprocess, producing jobs for it, and waiting on what it does."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis_ha
from redis_ha.rq import Queue
from redis_ha.rq.connection import RQRedis
from redis_ha.rq.defaults import RQSettings

from tests.rq import jobs
from tests.support import processes
from tests.support.cluster import LoopbackCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCE_LIMIT_S = 30.0
FAST_RETRY = RQSettings(retry_max=3, retry_intervals_s=(1,))


def ha_queue(cluster: LoopbackCluster, name: str = "default", **kwargs: Any) -> Queue:
    """A ``redis_ha.rq.Queue`` on its own connection to ``cluster`` (job retries after 1 s)."""
    settings = redis_ha.load_settings(env=cluster.env())
    return Queue(name, connection=RQRedis(settings), rq_settings=kwargs.pop("rq_settings", FAST_RETRY), **kwargs)


class Producer(threading.Thread):
    """Enqueues a job every few ms in a bounded loop, to each queue in turn; records which job
    ids were acknowledged. By default the job is ``jobs.record(record_path)``."""

    def __init__(
        self,
        queue: Queue | Sequence[Queue],
        record_path: Path,
        func: Callable[..., Any] = jobs.record,
        args: tuple[Any, ...] = (),
    ) -> None:
        super().__init__(daemon=True)
        self.queues = [queue] if isinstance(queue, Queue) else list(queue)
        self.record_path = str(record_path)
        self.func = func
        self.args = args
        self.acknowledged: list[str] = []
        self.errors: list[BaseException] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + PRODUCE_LIMIT_S
        turn = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            queue = self.queues[turn % len(self.queues)]
            turn += 1
            try:
                job = queue.enqueue(self.func, self.record_path, *self.args)
                self.acknowledged.append(job.id)
            except Exception as error:  # what surfaces is what the test checks
                self.errors.append(error)
            time.sleep(0.01)

    def stop(self) -> set[str]:
        """Stop producing; return the acknowledged job ids."""
        self.stop_event.set()
        self.join(PRODUCE_LIMIT_S)
        return set(self.acknowledged)


def worker_env(cluster: LoopbackCluster, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RQ_"))}
    env |= cluster.env()
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env |= dict(extra or {})
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redis_ha.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO_ROOT,
    )


@contextlib.contextmanager
def worker_process(
    cluster: LoopbackCluster,
    log_path: Path,
    queues: tuple[str, ...] = ("default",),
    cli_args: tuple[str, ...] = (),
    module: str = "redis_ha.cli",
    **extra: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """``redis-ha worker QUEUE...`` in the background; stopped (SIGTERM, then SIGKILL) by its pid.

    ``module`` runs another entry point taking the same arguments (a test's patched worker)."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module, "worker", *cli_args, *queues],
            env=worker_env(cluster, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        processes.stop(process, timeout_s=15)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> float:
    """Poll ``condition`` until true; return the seconds it took. AssertionError naming ``what`` otherwise."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


def kill_master_under_load(
    cluster: LoopbackCluster, producer: Producer, record: Path, *, drain_limit_s: float, jobs_each_side: int = 25
) -> set[str]:
    """Start ``producer``; once it has ``jobs_each_side`` jobs acknowledged, kill -9 the master; keep
    producing on the new one until as many more are; then wait until every acknowledged job has run.
    Returns the acknowledged job ids. Counted, not timed: a loaded machine only takes longer."""
    producer.start()
    wait_until(lambda: len(producer.acknowledged) >= jobs_each_side, 30.0, "jobs acknowledged before the kill")
    old = cluster.kill_master()
    cluster.wait_for_master_change(old)
    switched_at = len(producer.acknowledged)
    wait_until(
        lambda: len(producer.acknowledged) >= switched_at + jobs_each_side, 30.0, "jobs acknowledged after the kill"
    )
    acknowledged = producer.stop()
    wait_until(
        lambda: acknowledged <= set(jobs.executions(str(record))),
        drain_limit_s,
        "every acknowledged job to run",
        interval_s=0.5,
    )
    return acknowledged
