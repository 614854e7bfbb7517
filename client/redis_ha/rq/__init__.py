"""RQ on Redis behind Sentinel: producers and workers that ride through failover.

from redis_ha.rq import Queue
q = Queue("default")                    # REDIS_* and RQ_* settings from the environment
job = q.enqueue(send_mail, "a@b.c")     # idempotent across failover; durable with RQ_DURABLE=all

Run workers with ``redis-ha worker high default low``, or a pool of N worker processes with
``redis-ha worker --processes N high default low`` (see ``redis_ha.cli``).
"""

from redis_ha.rq.connection import RQRedis, rq_connection
from redis_ha.rq.defaults import DURABLE_ALL, RQSettings, load_rq_settings
from redis_ha.rq.dequeue import WorkerQueue
from redis_ha.rq.pool import HAWorkerPool
from redis_ha.rq.queue import Queue
from redis_ha.rq.scheduler import HAScheduler
from redis_ha.rq.worker import HAWorker, make_worker

__all__ = [
    "DURABLE_ALL",
    "HAScheduler",
    "HAWorker",
    "HAWorkerPool",
    "Queue",
    "RQRedis",
    "RQSettings",
    "WorkerQueue",
    "load_rq_settings",
    "make_worker",
    "rq_connection",
]
