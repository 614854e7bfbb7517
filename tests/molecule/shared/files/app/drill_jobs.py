"""Job function of the drills (Molecule scenarios failover, partition), run by the worker on app1.

Each execution appends ``<job id>`` to a file (one short O_APPEND write is atomic), outside Redis,
so the record itself cannot be lost or doubled by a failover.
"""

from __future__ import annotations

import os

from rq import get_current_job

EXECUTIONS = "/var/lib/redis-ha-app/drill/executions.log"


def record() -> str:
    job = get_current_job()
    job_id = job.id if job is not None else "-"
    fd = os.open(EXECUTIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, f"{job_id}\n".encode())
    finally:
        os.close(fd)
    return job_id
