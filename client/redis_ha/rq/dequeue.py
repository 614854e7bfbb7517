"""Taking a job off the queues so that it is never lost between dequeue and start.

BLPOP removes the job id from Redis: if the worker then loses its master before the job is
recorded as started, the job is gone. ``WorkerQueue`` always dequeues with LMOVE into
``<queue>:intermediate`` (RQ does so only for a single queue), where ``OrphanSweeper`` finds a
job that is never started.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import redis
import rq
from rq.exceptions import DequeueTimeout
from rq.utils import as_text

MULTI_QUEUE_POLL_S = 0.5
"""With several queues, the longest a job on a lower-priority queue waits for an idle worker, seconds."""


class WorkerQueue(rq.Queue):
    """``rq.Queue`` whose multi-queue dequeue also goes through the intermediate list (LMOVE, not BLPOP).

    BLPOP removes the job id from Redis: if the worker then loses its master before the job is
    recorded as started, the job is gone. LMOVE keeps it in ``<queue>:intermediate`` until the
    work-horse starts it, where ``OrphanSweeper`` finds it if it is never started.
    """

    @classmethod
    def dequeue_any(  # noqa: PLR0917 - RQ's signature
        cls,
        queues: Iterable[rq.Queue],
        timeout: int | None,
        connection: redis.Redis,
        job_class: Any = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> Any:
        queues = list(queues)
        if len(queues) == 1:
            return super().dequeue_any(queues, timeout, connection, job_class, serializer, death_penalty_class)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for queue in queues:
                found = cls.lmove(connection, queue.key, None)
                if found is None:
                    continue
                queue_key, job_id = (as_text(part) for part in found)
                fetched = cls._fetch_dequeued_job(
                    connection, queue_key, job_id, job_class, serializer, death_penalty_class
                )
                if fetched is not None:
                    return fetched
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DequeueTimeout(timeout, [q.key for q in queues])
            # Block on the most important queue for a moment, then look at all of them again.
            first = queues[0]
            moved = connection.blmove(
                first.key,
                first.intermediate_queue_key,
                min(MULTI_QUEUE_POLL_S, remaining),  # type: ignore[arg-type]
            )
            if moved is not None:
                fetched = cls._fetch_dequeued_job(
                    connection, first.key, as_text(moved), job_class, serializer, death_penalty_class
                )
                if fetched is not None:
                    return fetched
