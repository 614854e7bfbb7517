"""An outage: whether something is failing right now, since when, and the log lines that say so.

One ``Outage`` per thing that can be lost: the master (or the replicas) of a service in this
process, owned by its ``Topology`` and shared by every pool there, so N connections failing at
once log one line, not N; and each background loop that waits for Redis (the worker's work loop,
say). Lines are written when the trouble starts or changes kind, again every ``SAY_AGAIN_S``
while it lasts, and once when it ends: never one per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

SAY_AGAIN_S = 5.0
"""While the master (or the replicas) stays lost, the client says so again this often, seconds."""
LOOP_SAY_AGAIN_S = 30.0
"""While a background loop (worker, scheduler) keeps failing, it says so again this often, seconds."""


@dataclass(frozen=True)
class Lines:
    """The sentences an outage logs; ``{error}``, ``{seconds}``, ``{attempts}`` and ``{say_again_s}`` are filled in.

    ``lost`` may name one sentence per kind of trouble (see ``Outage.failed``)."""

    lost: str | Mapping[str, str]
    still: str
    back: str
    level: int = logging.WARNING


class Outage:
    """Thread-safe; ``failed`` on every failed attempt, ``recovered`` on the first success after."""

    def __init__(self, logger: logging.Logger, lines: Lines, *, say_again_s: float | Callable[[], float] = SAY_AGAIN_S):
        self._logger = logger
        self._lines = lines
        self._say_again_s = say_again_s
        self._lock = threading.Lock()
        self.since: float | None = None
        self.attempts = 0
        self.kind = ""
        self.master_answered = False
        self._said_at = 0.0

    @property
    def ongoing(self) -> bool:
        return self.since is not None

    @property
    def master_silent(self) -> bool:
        """In trouble, and the last failure was not a working master answering: the time to look
        for a replica that took over."""
        return self.since is not None and not self.master_answered

    def failed(self, error: str, *, kind: str = "", level: int | None = None, master_answered: bool = False) -> bool:
        """Count a failed attempt (``error``: what it was, one line); True when this one started the outage."""
        now = time.monotonic()
        with self._lock:
            self.master_answered = master_answered
            self.attempts += 1
            started = self.since is None
            changed = kind != self.kind
            if started:
                self.since = now
            elif not changed and now - self._said_at < self._interval():
                return False
            self.kind, self._said_at = kind, now
            since, attempts = self.since, self.attempts
        lost = self._lines.lost
        line = (lost if isinstance(lost, str) else lost[kind]) if started or changed else self._lines.still
        assert since is not None
        self._logger.log(
            self._lines.level if level is None else level,
            line.format(error=error, seconds=now - since, attempts=attempts, say_again_s=self._interval()),
        )
        return started

    def recovered(self, **fields: object) -> float | None:
        """End the outage, if one was under way: log it and return how long it lasted, seconds."""
        with self._lock:
            since, self.since = self.since, None
            self.attempts, self.kind, self.master_answered = 0, "", False
        if since is None:
            return None
        lasted = time.monotonic() - since
        self._logger.log(self._lines.level, self._lines.back.format(seconds=lasted, **fields))
        return lasted

    def _interval(self) -> float:
        value = self._say_again_s
        return value() if callable(value) else value
