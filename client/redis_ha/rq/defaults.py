"""Job and queue defaults for RQ, from ``RQ_*`` environment variables, validated all at once.

Every malformed variable is reported in one ``ConfigError`` naming it, its value and the
expected form. Unset variables take the defaults below (units in the names).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

from redis_ha.errors import ConfigError

DEFAULT_RETRY_MAX = 3
DEFAULT_RETRY_INTERVALS_S: tuple[int, ...] = (10, 30, 60)
DEFAULT_JOB_TIMEOUT_S = 180  # RQ's own default
DEFAULT_RESULT_TTL_S = 500  # RQ's own default
DEFAULT_FAILURE_TTL_S = 365 * 24 * 3600  # RQ's own default: one year
DEFAULT_DURABLE_TIMEOUT_MS = 1000
DEFAULT_ENQUEUE_DEDUP_TTL_S = 24 * 3600
"""How long a job id is remembered as enqueued after its first enqueue, seconds (0 = not at all)."""
DURABLE_ALL = -1
"""``durable_replicas`` value meaning: every healthy replica (the safe setting; see ``RQSettings``)."""


@dataclass(frozen=True)
class RQSettings:
    """What a producer applies to every job it enqueues unless the call says otherwise.

    ``durable_replicas``: 0 = acknowledge once the master has the job; N = once N replicas
    confirm it (``WAIT``); ``DURABLE_ALL`` = once every healthy replica does (the larger of
    Sentinel's count and the master's).
    Only ``DURABLE_ALL`` (or N = all replicas) cannot lose an acknowledged job in a planned
    ``SENTINEL FAILOVER``: a replica not yet moved to the new master confirms writes the old
    master still takes, then resyncs them away.

    ``enqueue_dedup_ttl_s``: how long an enqueued job id is remembered (one small marker key per
    job), so that a retried or re-sent enqueue of the same id is a no-op even after the job ran
    and its hash expired. 0 = no marker: only an existing job hash makes an enqueue a no-op.
    """

    retry_max: int = DEFAULT_RETRY_MAX
    retry_intervals_s: tuple[int, ...] = DEFAULT_RETRY_INTERVALS_S
    job_timeout_s: int = DEFAULT_JOB_TIMEOUT_S
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    failure_ttl_s: int = DEFAULT_FAILURE_TTL_S
    durable_replicas: int = 0
    durable_timeout_ms: int = DEFAULT_DURABLE_TIMEOUT_MS
    outbox_path: str | None = None
    enqueue_dedup_ttl_s: int = DEFAULT_ENQUEUE_DEDUP_TTL_S

    def __post_init__(self) -> None:
        problems = rq_settings_problems(self)
        if problems:
            raise ConfigError(problems)

    def describe(self) -> str:
        durable = {0: "off", DURABLE_ALL: "all replicas"}.get(
            self.durable_replicas, f"{self.durable_replicas} replicas"
        )
        intervals = ",".join(str(i) for i in self.retry_intervals_s) or "none"
        return (
            f"job timeout {self.job_timeout_s}s, retries {self.retry_max} (intervals {intervals}s), "
            f"result TTL {self.result_ttl_s}s, failure TTL {self.failure_ttl_s}s, durable {durable}, "
            f"outbox {self.outbox_path or 'off'}, enqueue dedup "
            + (f"{self.enqueue_dedup_ttl_s}s" if self.enqueue_dedup_ttl_s else "off (job hash only)")
        )


def rq_settings_problems(settings: RQSettings) -> list[str]:
    """Why settings built in code (not from the environment) are unusable: every count and
    duration must be a whole number, which also keeps out inf and nan. Pure."""
    problems = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        unit = "milliseconds" if f.name.endswith("_ms") else "seconds" if f.name.endswith("_s") else "retries"
        if f.name == "outbox_path":
            continue
        if f.name == "retry_intervals_s":
            if not isinstance(value, tuple | list) or not all(_is_whole(n) for n in value):
                problems.append(f"RQSettings {f.name} is {value!r}; expected a tuple of whole numbers of seconds")
        elif not _is_whole(value):
            problems.append(f"RQSettings {f.name} is {value!r}; expected a whole number of {unit}")
    return problems


def _is_whole(value: object) -> bool:
    """An int and not a bool: float inf and nan are not."""
    return isinstance(value, int) and not isinstance(value, bool)


_WHOLE = re.compile(r"-?[0-9]+")
_NATURAL = re.compile(r"[0-9]+")

# Variable, RQSettings field, least value, -1 allowed (= never expires), unit.
_WHOLE_VARS = (
    ("RQ_RETRY_MAX", "retry_max", 0, False, "retries"),
    ("RQ_JOB_TIMEOUT", "job_timeout_s", 1, True, "seconds"),
    ("RQ_RESULT_TTL", "result_ttl_s", 0, True, "seconds"),
    ("RQ_FAILURE_TTL", "failure_ttl_s", 1, True, "seconds"),
    ("RQ_DURABLE_TIMEOUT_MS", "durable_timeout_ms", 1, False, "milliseconds"),
    ("RQ_ENQUEUE_DEDUP_TTL", "enqueue_dedup_ttl_s", 0, False, "seconds"),
)


def _whole_problem(var: str, raw: str, minimum: int, minus_one: bool, unit: str) -> str | None:
    """Why ``raw`` is not a whole number of ``unit`` of at least ``minimum``; None if it is one. Pure."""
    never = " (or -1 for never)" if minus_one else ""
    expected = f"expected a whole number of {unit} of at least {minimum}{never}"
    value = int(raw) if _WHOLE.fullmatch(raw) else None
    if value is None and not _finite(raw):
        return f"{var} is '{raw}', which is not finite (inf and nan are refused); {expected}"
    if value is None or (value < minimum and not (minus_one and value == -1)):
        return f"{var} is '{raw}'; {expected}"
    return None


def _finite(text: str) -> bool:
    """False for inf, nan and 1e999 in any spelling; True for anything else, numbers or not."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return True


def load_rq_settings(env: Mapping[str, str] | None = None) -> RQSettings:
    """Read ``RQ_RETRY_MAX``, ``RQ_RETRY_INTERVALS``, ``RQ_JOB_TIMEOUT``, ``RQ_RESULT_TTL``,
    ``RQ_FAILURE_TTL``, ``RQ_DURABLE`` (0, N or ``all``), ``RQ_DURABLE_TIMEOUT_MS``,
    ``RQ_OUTBOX_PATH`` and ``RQ_ENQUEUE_DEDUP_TTL`` (seconds, 0 = off); raise ``ConfigError``
    listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    values: dict[str, object] = {}
    for var, name, minimum, minus_one, unit in _WHOLE_VARS:
        raw = env.get(var, "").strip()
        if not raw:
            continue
        problem = _whole_problem(var, raw, minimum, minus_one, unit)
        if problem:
            problems.append(problem)
        else:
            values[name] = int(raw)
    raw_intervals = env.get("RQ_RETRY_INTERVALS", "").strip()
    if raw_intervals:
        parts = [p.strip() for p in raw_intervals.split(",")]
        if all(_NATURAL.fullmatch(p) for p in parts):
            values["retry_intervals_s"] = tuple(int(p) for p in parts)
        else:
            problems.append(
                f"RQ_RETRY_INTERVALS is '{raw_intervals}'; expected whole seconds separated by commas, e.g. 10,30,60 "
                "(not inf or nan)"
            )
    raw_durable = env.get("RQ_DURABLE", "").strip().lower()
    if raw_durable in ("all", "yes", "true", "on"):
        values["durable_replicas"] = DURABLE_ALL
    elif raw_durable in ("", "0", "no", "false", "off"):
        pass
    elif _NATURAL.fullmatch(raw_durable):
        values["durable_replicas"] = int(raw_durable)
    else:
        problems.append(f"RQ_DURABLE is '{raw_durable}'; expected 0 (off), a number of replicas, or 'all'")
    outbox = env.get("RQ_OUTBOX_PATH", "").strip()
    if outbox:
        values["outbox_path"] = outbox
    if problems:
        raise ConfigError(problems)
    return RQSettings(**values)  # type: ignore[arg-type]
