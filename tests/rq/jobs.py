"""Job functions for the RQ tests and benchmark; importable by a worker subprocess (PYTHONPATH=repo root).

Executions are recorded by appending one line to a file (O_APPEND writes of one short line are
atomic), not in Redis, so the record itself cannot be lost or doubled by a failover: ``record`` is
the drills' own (``<job id> <time> <pid>``); every line starts with the job id.
"""

from __future__ import annotations

import os
import time

from redis_ha.drill.jobs import record
from rq import get_current_job

__all__ = ["executions", "noop", "record", "record_where", "records", "sleep_then_record"]


def sleep_then_record(path: str, seconds: float) -> str:
    """Work for ``seconds``, then record the execution."""
    time.sleep(seconds)
    return record(path)


def record_where(path: str, seconds: float = 0.0) -> str:
    """Work for ``seconds``, then append ``<job id> <queue> <connection class> <pool class> <worker pid>``.

    The worker pid is the work-horse's parent; the classes are those of the connection the
    work-horse runs the job with.
    """
    time.sleep(seconds)
    job = get_current_job()
    assert job is not None
    conn = job.connection
    line = f"{job.id} {job.origin} {type(conn).__name__} {type(conn.connection_pool).__name__} {os.getppid()}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return job.id


def records(path: str) -> list[list[str]]:
    """The lines of ``path`` split into fields, in the order they were written."""
    try:
        with open(path, encoding="utf-8") as lines:
            return [line.split() for line in lines if line.strip()]
    except FileNotFoundError:
        return []


def noop() -> None:
    """Nothing: for throughput measurements."""


def executions(path: str) -> dict[str, int]:
    """How many times each job id was recorded in ``path``."""
    counts: dict[str, int] = {}
    try:
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                job_id = line.split(" ", 1)[0].strip()
                if job_id:
                    counts[job_id] = counts.get(job_id, 0) + 1
    except FileNotFoundError:
        pass
    return counts
