"""The job drill workers run. A worker imports it as ``redis_ha.drill.jobs.record``.

It appends ``<job id> <time> <pid>`` to a local file with one O_APPEND write (atomic for a
short line), not to Redis: the record of an execution must not itself be lost or doubled by
the failover being measured.
"""

from __future__ import annotations

import os
import time


def record(path: str) -> str:
    """Record that this job ran; return its id."""
    from rq import get_current_job  # noqa: PLC0415 - only inside a worker

    job = get_current_job()
    job_id = job.id if job is not None else "-"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id} {time.time():.6f} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return job_id
