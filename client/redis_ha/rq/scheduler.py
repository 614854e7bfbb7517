"""RQ's scheduler process, riding through Redis errors instead of dying on the first one."""

from __future__ import annotations

import contextlib
import logging
import time

import redis
from rq.scheduler import RQScheduler

from redis_ha.errors import describe_error
from redis_ha.outage import LOOP_SAY_AGAIN_S, Lines, Outage

logger = logging.getLogger(__name__)


class HAScheduler(RQScheduler):
    """RQ's scheduler process, riding through Redis errors instead of dying on the first one."""

    def work(self) -> None:
        self._install_signal_handlers()
        outage = Outage(
            logger,
            Lines(
                lost="Scheduler lost Redis ({error}); retrying.",
                still="Scheduler: Redis still failing after {seconds:.0f}s, {attempts} attempts ({error}).",
                back="Scheduler reached Redis again after {seconds:.1f}s; enqueueing scheduled jobs.",
            ),
            say_again_s=LOOP_SAY_AGAIN_S,
        )
        registered = False
        while not self._stop_requested:
            try:
                if not registered:
                    self.register_birth()
                    registered = True
                if self.should_reacquire_locks:
                    self.acquire_locks()
                self.heartbeat()
                self.enqueue_scheduled_jobs()
                outage.recovered()
            except redis.RedisError as exc:
                outage.failed(describe_error(exc))
            time.sleep(self.interval)  # its polling interval, also between attempts while Redis is away
        with contextlib.suppress(redis.RedisError):
            self.stop()
