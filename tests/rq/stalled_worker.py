"""``redis-ha worker`` whose main process stalls after taking its first job off the queue, before starting it.

Run as ``python -m tests.rq.stalled_worker worker QUEUE...`` with ``TEST_STALL_S`` (seconds) and
``TEST_STALL_MARK`` (a file the job id is written to when the stall begins). The stall sits where a
slow hook, a long GC pause or a swapped-out process would: after the dequeue, before the job runs.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from redis_ha import cli
from redis_ha.rq.worker import HAWorker

_execute_job = HAWorker.execute_job
_stalled: list[str] = []


def _stall_then_execute(self: HAWorker, job: Any, queue: Any) -> Any:
    if not _stalled:
        _stalled.append(job.id)
        with open(os.environ["TEST_STALL_MARK"], "w", encoding="utf-8") as mark:
            mark.write(job.id)
        time.sleep(float(os.environ["TEST_STALL_S"]))
    return _execute_job(self, job, queue)


HAWorker.execute_job = _stall_then_execute  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
