"""One exception tree for everything redis_ha raises.

``RedisUnavailable`` and ``AuthError`` also subclass redis-py's own exceptions, so
code that already catches ``redis.exceptions.ConnectionError`` keeps working.
"""

from __future__ import annotations

import redis.exceptions


def describe_error(error: BaseException) -> str:
    """``Name: first line of the message`` (just ``Name`` when there is none): for one log line."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class RedisHAError(Exception):
    """Root of every error raised by redis_ha."""


class ConfigError(RedisHAError, ValueError):
    """The configuration is incomplete or malformed; the message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            text = f"Invalid Redis configuration: {self.problems[0]}"
        else:
            text = "Invalid Redis configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


class AuthError(RedisHAError, redis.exceptions.AuthenticationError):
    """A server refused our credentials. Retrying cannot help, so this is raised at once."""


class RedisUnavailable(RedisHAError, redis.exceptions.ConnectionError):
    """No writable (or readable) server could be reached before the retry deadline.

    ``attempts`` holds one line per thing that was tried, newest last.
    """

    def __init__(self, message: str, attempts: list[str] | None = None) -> None:
        self.attempts = list(attempts or [])
        if self.attempts:
            shown = self.attempts[-8:]
            skipped = len(self.attempts) - len(shown)
            lines = [f"  - {a}" for a in shown]
            if skipped:
                lines.insert(0, f"  ... {skipped} earlier attempts")
            message = message + "\n" + "\n".join(lines)
        super().__init__(message)


class CommandOutcomeUnknown(RedisUnavailable):
    """A non-idempotent command reached a server that then failed before answering.

    It may or may not have run. redis_ha does not retry it, because running it twice
    is not safe (see ``redis_ha.commands``); the caller decides.
    """


class NotDurable(RedisUnavailable):
    """A durable write was not confirmed by enough replicas before the deadline."""


class TopologyChanged(redis.exceptions.ConnectionError):
    """Internal: the server we reached is not in the role we need (failover under way).

    Raised inside the retry loop and never surfaced to callers.
    """
