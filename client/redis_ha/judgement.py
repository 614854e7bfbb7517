"""What a failure says: the one place where redis_ha judges an error, as pure functions.

``judge(error, role)`` returns a ``Judgement``: the verdict (did the command run, may it be
retried), a reason sentence for logs and errors, whether the command left this process, and
whether a working master answered (then the master is not lost, it only cannot confirm writes
yet). The retry loop acts on it, the outage log reports its reason, routing reads whether the
master answered; nobody else inspects exceptions.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import redis
from redis.exceptions import MasterDownError, TryAgainError
from redis.sentinel import MasterNotFoundError

from redis_ha.errors import AuthError, NotDurable, RedisHAError, TopologyChanged

NOT_SENT_MARK = "redis_ha_not_sent"
"""Attribute set on an exception raised while connecting: the command never left this process."""

# Server replies meaning "not here, not now": the command did not run.
_REJECTION = re.compile(r"(?:^|caused error: )(READONLY|NOREPLICAS|MASTERDOWN|LOADING|UNBLOCKED|TRYAGAIN)\b")
_NOREPLICAS = re.compile(r"(?:^|caused error: )NOREPLICAS\b")  # alone, or inside a pipeline's error


class Verdict(enum.Enum):
    """What a failure tells us about the command that failed."""

    NOT_RUN = "the command did not run; retry it"
    MAYBE_RUN = "the connection broke; the command may have run"
    AUTH = "credentials refused; retrying cannot help"
    OTHER = "an ordinary error for the caller"


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str
    sent: bool = True
    """False when the failure happened before the command reached a socket."""
    master_answered: bool = False
    """A working master answered (NOREPLICAS, or a write not confirmed by replicas): no replica
    can have taken over from it, so looking for one is pointless."""


def mark_not_sent(error: BaseException) -> None:
    """Record on ``error`` that it was raised before the command was written."""
    setattr(error, NOT_SENT_MARK, True)


def was_sent(error: BaseException) -> bool:
    return not getattr(error, NOT_SENT_MARK, False)


def is_auth_failure(error: BaseException) -> bool:
    if isinstance(error, (AuthError, redis.AuthenticationError)):
        return True
    return isinstance(error, redis.ResponseError) and str(error).startswith(("NOAUTH", "WRONGPASS", "NOPERM"))


def master_is_alive(error: BaseException) -> bool:
    """The node answered as a working master that cannot confirm writes yet (a master just
    promoted, whose replicas have not attached): no replica can have taken over from it."""
    return isinstance(error, NotDurable) or (
        isinstance(error, redis.ResponseError) and _NOREPLICAS.search(str(error)) is not None
    )


def judge(error: BaseException, role: str = "master") -> Judgement:
    """What ``error`` says about the command; ``role`` is what the client talks to (master or replica)."""
    sent = was_sent(error)
    alive = master_is_alive(error)
    if is_auth_failure(error):
        return Judgement(Verdict.AUTH, "the server refused our credentials", sent)
    if isinstance(error, NotDurable):
        # It ran on the master, which may be about to lose it: repeat it only if that is safe.
        return Judgement(Verdict.MAYBE_RUN, "the master took it but too few replicas confirmed it", sent, alive)
    if isinstance(error, RedisHAError):
        return Judgement(Verdict.OTHER, "redis_ha's own error", sent)
    if isinstance(error, MasterNotFoundError):
        return Judgement(Verdict.NOT_RUN, "no sentinel named a master", False)
    if isinstance(error, TopologyChanged):
        return Judgement(Verdict.MAYBE_RUN, "the node is not in the role we need: failover under way", sent)
    # redis-py strips the code of the replies it maps to a class (READONLY -> ReadOnlyError,
    # LOADING -> BusyLoadingError, MASTERDOWN -> MasterDownError, TRYAGAIN -> TryAgainError): test
    # the class, then the text.
    if isinstance(error, redis.ReadOnlyError):
        if role != "master":
            return Judgement(Verdict.OTHER, "a write sent to a replica client: the caller's mistake", sent)
        return Judgement(Verdict.NOT_RUN, "the node is a replica now (READONLY)", sent)
    if isinstance(error, (redis.BusyLoadingError, MasterDownError, TryAgainError)):
        return Judgement(Verdict.NOT_RUN, "the server is not ready (LOADING, MASTERDOWN or TRYAGAIN)", sent)
    if isinstance(error, redis.ResponseError):
        found = _REJECTION.search(str(error))
        if found is None:
            return Judgement(Verdict.OTHER, "the server answered with an error for the caller", sent)
        return Judgement(Verdict.NOT_RUN, f"the server rejected it for now ({found.group(1)})", sent, alive)
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
        if not sent:
            return Judgement(Verdict.MAYBE_RUN, "the connection could not be made", sent)
        return Judgement(Verdict.MAYBE_RUN, "the connection broke after the command was sent", sent)
    return Judgement(Verdict.OTHER, "not a Redis error", sent)


def trouble_kind(error: BaseException) -> str:
    """What kind of trouble an error that left the retry loop is, for a background loop's log.

    "lost": Redis could not be reached (the retry loop gave up); "refused": Redis answered with an
    error that will come back until someone acts (NOPERM, OOM, a failing script, refused credentials).
    """
    if is_auth_failure(error) or not isinstance(error, (redis.ConnectionError, redis.TimeoutError, OSError)):
        return "refused"
    return "lost"


def classify(error: BaseException, role: str = "master") -> Verdict:
    """``judge(error, role).verdict``."""
    return judge(error, role).verdict
