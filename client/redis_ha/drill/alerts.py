"""When did an alert fire, and when did its notification arrive? Parsing is pure.

Firing: Prometheus's HTTP API (``ALERTS`` series). Delivery: a webhook receiver that records each
notification Alertmanager posts with its receive time and lists them on GET (the lab's receiver,
tests/molecule/shared/files/alert_receiver) — Alertmanager's own API says what fires, not when a
notification went out.
"""

from __future__ import annotations

import datetime
import json
import urllib.parse
import urllib.request
from typing import Any

FAILOVER_ALERT = "RedisFailoverHappened"
QUERY_TIMEOUT_S = 5.0
QUERY_STEP_S = 1.0
RUN_BREAK_STEPS = 1.5
"""Samples further apart than this many steps belong to two separate firings."""


def first_firing(reply: dict[str, Any], after: float | None = None, step_s: float = QUERY_STEP_S) -> float | None:
    """When an alert began firing, from a ``query_range`` reply over ``ALERTS{alertstate="firing"}``. Pure.

    A series' samples come in runs, one per ``step_s`` while the alert fires; a run starts when the
    alert (for that instance) began firing. With ``after``, only runs that start after it count: a run
    already under way at ``after`` is an earlier failover's alert still firing, while a later run of
    the same series is a new firing (the same node promoted again).
    """
    if reply.get("status") != "success":
        return None
    starts = []
    for series in reply.get("data", {}).get("result", []):
        times = sorted(float(t) for t, _ in series.get("values", []))
        runs = [t for i, t in enumerate(times) if i == 0 or t - times[i - 1] > RUN_BREAK_STEPS * step_s]
        starts += [t for t in runs if after is None or t > after]
    return min(starts, default=None)


def _unix(rfc3339: str) -> float | None:
    """Alertmanager's ``startsAt`` (RFC 3339, up to nanoseconds) as Unix seconds, None if unreadable."""
    head, dot, rest = rfc3339.replace("Z", "+00:00").partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        rest = digits[:6] + rest[len(digits) :]
    try:
        return datetime.datetime.fromisoformat(head + (f".{rest}" if dot else "")).timestamp()
    except ValueError:
        return None


def first_delivery(records: list[dict[str, Any]], alert: str, after: float) -> float | None:
    """When a notification of ``alert`` firing, for a firing that began after ``after``, first arrived. Pure.

    ``records`` is what the receiver lists: ``{"received": <Unix seconds>, "notification": <the
    webhook body Alertmanager posted>}``. An alert that started before ``after`` is an earlier
    failover's, repeated or resolved; it does not count.
    """
    times = []
    for record in records:
        for item in record.get("notification", {}).get("alerts", []):
            started = _unix(str(item.get("startsAt", "")))
            if (
                item.get("status") == "firing"
                and item.get("labels", {}).get("alertname") == alert
                and started is not None
                and started > after
            ):
                times.append(float(record["received"]))
    return min(times, default=None)


def _get_json(url: str, what: str) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{what} URL must be http(s): {url}")
    with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_S) as response:  # noqa: S310 - scheme checked above
        return json.loads(response.read().decode())


def alert_firing_at(base_url: str, alert: str, start: float, end: float, after: float | None = None) -> float | None:
    """When ``alert`` first fired between ``start`` and ``end`` (Unix seconds), or None; see ``first_firing``."""
    query = f'ALERTS{{alertname="{alert}",alertstate="firing"}}'
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{QUERY_STEP_S:g}"}
    )
    reply: dict[str, Any] = _get_json(f"{base_url.rstrip('/')}/api/v1/query_range?{params}", "Prometheus")
    return first_firing(reply, after, QUERY_STEP_S)


def alert_delivered_at(receiver_url: str, alert: str, after: float) -> float | None:
    """When ``receiver_url`` first got ``alert`` for a firing after ``after``, or None; see ``first_delivery``."""
    records: list[dict[str, Any]] = _get_json(receiver_url, "webhook receiver")
    return first_delivery(records, alert, after)
