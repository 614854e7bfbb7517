"""Retrying one Redis operation across a failover until an overall deadline.

What a failure means is ``judgement.judge``'s call; how long to wait is ``reconnect.backoff_s``'s;
whether the master is lost is the pool's ``Outage`` (one per process and service), which this
loop tells about every failed attempt and the first success after. The loop wakes early when the
watcher announces a failover and raises a single ``RedisUnavailable`` at the deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis_ha.commands import command_name, safe_to_repeat
from redis_ha.config import format_address
from redis_ha.errors import AuthError, CommandOutcomeUnknown, NotDurable, RedisUnavailable, describe_error
from redis_ha.judgement import Judgement, Verdict, judge
from redis_ha.pool import HAConnectionPool
from redis_ha.reconnect import backoff_s

T = TypeVar("T")


class RetryLoop:
    """Runs one Redis operation until it succeeds, fails for a reason of its own, or the deadline passes."""

    def __init__(self, pool: HAConnectionPool) -> None:
        self.pool = pool
        self.settings = pool.settings
        self._topology = pool.topology  # read on every command: one attribute, not a property

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
            epoch = self._topology.switch_epoch
            try:
                result = operation()
            except Exception as error:
                judgement = judge(error, self.pool.role)
                verdict = judgement.verdict
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
                if verdict is Verdict.MAYBE_RUN and judgement.sent and not repeatable:
                    raise CommandOutcomeUnknown(
                        f"{what} was sent to {self._where()} and the connection broke before the reply, "
                        "so it may or may not have run; it is not retried because running it twice is "
                        "not safe (pass retry_unsafe_commands=True to retry anyway)",
                        [*attempts, _describe(error)],
                    ) from error
                attempts.append(_describe(error))
                self.note_failure(error, judgement)
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
                self.pool.outage.recovered(where=format_address(self.pool.current_master))
            return result

    def note_failure(self, error: BaseException, judgement: Judgement | None = None) -> None:
        """Tell the pool an attempt failed for a failover reason: idle connections go, the outage
        is logged, and the next connection is routed afresh. Also for a caller that retries itself."""
        judgement = judge(error, self.pool.role) if judgement is None else judgement
        self.pool.drop_idle()
        self.pool.outage.failed(
            f"{describe_error(error)}: {judgement.reason}", master_answered=judgement.master_answered
        )

    def _where(self) -> str:
        current = self.pool.current_master
        return format_address(current) if current else "the master"


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"
