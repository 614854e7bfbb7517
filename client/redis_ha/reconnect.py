"""The one reconnect policy: how long anything in redis_ha waits before it tries Redis again.

Full-jitter exponential backoff (it spreads reconnecting clients out), in two settings:

* ``backoff_s``: a command retried inside its retry deadline, woken early by a failover
  announcement (``RetryLoop``);
* ``loop_pause_s``: a background loop whose step already went through the retry loop and failed anyway
  (the worker's work loop, its scheduler, the orphan sweeper, the outbox flusher, the failover
  watcher, start-up): Redis was refused or unreachable for a whole deadline, so it waits longer.

``until_it_answers`` runs one step with ``loop_pause_s`` until it succeeds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis

T = TypeVar("T")


BACKOFF_BASE_S = 0.025
BACKOFF_CAP_S = 0.25
"""A command retried inside its deadline waits up to this long between attempts, seconds."""
LOOP_PAUSE_BASE_S = 0.1
LOOP_PAUSE_MAX_S = 2.0
"""A background loop waits up to this long between attempts, seconds."""
LOOP_PAUSE_MIN_S = 0.1
"""A background loop never tries again sooner than this, seconds: a refusal answers at once."""


def _full_jitter(base_s: float, cap_s: float, failures: int) -> float:
    return random.uniform(0, min(cap_s, base_s * 2 ** min(failures, 32)))


def backoff_s(failures: int) -> float:
    """How long a command waits after its ``failures``-th failed attempt, seconds."""
    return _full_jitter(BACKOFF_BASE_S, BACKOFF_CAP_S, failures)


def loop_pause_s(failures: int) -> float:
    """How long a background loop waits after its ``failures``-th failure in a row, seconds."""
    return max(LOOP_PAUSE_MIN_S, _full_jitter(LOOP_PAUSE_BASE_S, LOOP_PAUSE_MAX_S, failures))


def until_it_answers(
    step: Callable[[], T],
    *,
    on_failure: Callable[[BaseException], object],
    on_success: Callable[[], object] = lambda: None,
    retry_on: tuple[type[BaseException], ...] = (redis.RedisError, OSError),
    giving_up: tuple[type[BaseException], ...] = (),
    stop: threading.Event | None = None,
) -> T | None:
    """Run ``step`` until it succeeds (its value) or ``stop`` is set (None), pausing ``loop_pause_s``
    after each failure in ``retry_on`` (told to ``on_failure``, which logs); ``giving_up`` ones are raised."""
    failures = 0
    while stop is None or not stop.is_set():
        try:
            value = step()
        except giving_up:
            raise
        except retry_on as exc:
            failures += 1
            on_failure(exc)
            (stop.wait if stop is not None else time.sleep)(loop_pause_s(failures))
            continue
        on_success()
        return value
    return None
