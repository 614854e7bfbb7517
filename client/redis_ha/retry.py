"""Deciding whether a failure is a topology change, and retrying until an overall deadline.

The decision (``classify``) is a pure function over the exception, unit-tested without
sockets. The loop (``RetryLoop.run``) backs off with full jitter, wakes early when the
watcher announces a failover, and raises a single ``RedisUnavailable`` at the deadline.
"""

from __future__ import annotations

import enum
import random
import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
from redis.exceptions import MasterDownError, TryAgainError
from redis.sentinel import MasterNotFoundError

from redis_ha.commands import command_name, safe_to_repeat
from redis_ha.errors import AuthError, CommandOutcomeUnknown, NotDurable, RedisHAError, RedisUnavailable
from redis_ha.pool import HAConnectionPool, was_sent
from redis_ha.sentinel import is_auth_failure

T = TypeVar("T")

BACKOFF_BASE_S = 0.025
BACKOFF_CAP_S = 0.25

# Server replies meaning "not here, not now": the command did not run.
_REJECTION = re.compile(r"(?:^|caused error: )(READONLY|NOREPLICAS|MASTERDOWN|LOADING|UNBLOCKED|TRYAGAIN)\b")


class Verdict(enum.Enum):
    """What a failure tells us about the command that failed."""

    NOT_RUN = "the command did not run; retry it"
    MAYBE_RUN = "the connection broke; the command may have run"
    AUTH = "credentials refused; retrying cannot help"
    OTHER = "an ordinary error for the caller"


def classify(error: BaseException, role: str = "master") -> Verdict:
    """What ``error`` says about the command; ``role`` is what the client talks to (master or replica)."""
    if isinstance(error, AuthError) or is_auth_failure(error):
        return Verdict.AUTH
    if isinstance(error, NotDurable):
        # It ran on the master, which may be about to lose it: repeat it only if that is safe.
        return Verdict.MAYBE_RUN
    if isinstance(error, RedisHAError):
        return Verdict.OTHER
    if isinstance(error, MasterNotFoundError):
        return Verdict.NOT_RUN
    # redis-py strips the code of the replies it maps to a class (READONLY -> ReadOnlyError,
    # LOADING -> BusyLoadingError, MASTERDOWN -> MasterDownError, TRYAGAIN -> TryAgainError): test
    # the class, then the text.
    if isinstance(error, redis.ReadOnlyError) and role != "master":
        return Verdict.OTHER  # a write sent to a replica client: the caller's mistake, not a failover
    if isinstance(error, (redis.ReadOnlyError, redis.BusyLoadingError, MasterDownError, TryAgainError)):
        return Verdict.NOT_RUN
    if isinstance(error, redis.ResponseError):
        return Verdict.NOT_RUN if _REJECTION.search(str(error)) else Verdict.OTHER
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return Verdict.MAYBE_RUN
    return Verdict.OTHER


def backoff_s(failures: int) -> float:
    """Full-jitter exponential backoff: spreads reconnecting clients out."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**failures))


class RetryLoop:
    """Runs one Redis operation until it succeeds, fails for a reason of its own, or the deadline passes."""

    def __init__(self, pool: HAConnectionPool) -> None:
        self.pool = pool
        self.settings = pool.settings

    def run(
        self,
        operation: Callable[[], T],
        commands: Sequence[Sequence[Any]],
        *,
        safe: bool | None = None,
    ) -> T:
        """Run ``operation`` (which sends ``commands``) until it succeeds or the deadline passes.

        ``safe`` overrides the per-command judgement of whether the whole may run twice.
        """
        started = 0.0  # set at the first failure: the happy path never reads the clock
        attempts: list[str] = []
        while True:
            epoch = self.pool.switch_epoch
            try:
                result = operation()
            except Exception as error:
                verdict = classify(error, self.pool.role)
                if verdict is Verdict.OTHER:
                    raise
                if not attempts:
                    started = time.monotonic()
                names = [command_name(args) for args in commands]
                repeatable = self.settings.retry_unsafe_commands or (safe_to_repeat(names) if safe is None else safe)
                what = " ".join(names[:3]) + (" ..." if len(names) > 3 else "")
                if verdict is Verdict.AUTH:
                    if isinstance(error, AuthError):
                        raise
                    raise AuthError(
                        f"Redis refused user '{self.settings.username or 'default'}': {error}. "
                        "Check REDIS_USERNAME and REDIS_PASSWORD(_FILE); not retrying."
                    ) from error
                if isinstance(error, NotDurable) and not repeatable:
                    raise
                if verdict is Verdict.MAYBE_RUN and was_sent(error) and not repeatable:
                    raise CommandOutcomeUnknown(
                        f"{what} was sent to {self._where()} and the connection broke before the reply, "
                        "so it may or may not have run; it is not retried because running it twice is "
                        "not safe (pass retry_unsafe_commands=True to retry anyway)",
                        [*attempts, _describe(error)],
                    ) from error
                attempts.append(_describe(error))
                self.pool.drop_idle()
                self.pool.note_trouble(error, len(attempts))
                deadline_s = self.settings.retry_deadline_s
                remaining = started + deadline_s - time.monotonic()
                if remaining <= 0:
                    if isinstance(error, NotDurable):
                        raise NotDurable(
                            f"not confirmed by replicas within the {deadline_s:g}s retry deadline", attempts
                        ) from error
                    raise RedisUnavailable(
                        f"Redis master of '{self.settings.master_name}' unavailable: {what} not done after "
                        f"{len(attempts)} attempts over {deadline_s:g}s (retry deadline); what was tried:",
                        attempts,
                    ) from error
                self.pool.wait_for_switch(epoch, min(backoff_s(len(attempts)), remaining))
                continue
            if attempts:
                self.pool.note_recovered()
            return result

    def _where(self) -> str:
        current = self.pool.current_master
        return f"{current[0]}:{current[1]}" if current else "the master"


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"
