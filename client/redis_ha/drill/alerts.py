"""When did an alert fire? Read from Prometheus's HTTP API (``ALERTS`` series); parsing is pure."""

from __future__ import annotations

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


def alert_firing_at(base_url: str, alert: str, start: float, end: float, after: float | None = None) -> float | None:
    """When ``alert`` first fired between ``start`` and ``end`` (Unix seconds), or None; see ``first_firing``."""
    query = f'ALERTS{{alertname="{alert}",alertstate="firing"}}'
    params = urllib.parse.urlencode(
        {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{QUERY_STEP_S:g}"}
    )
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Prometheus URL must be http(s): {base_url}")
    with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_S) as response:  # noqa: S310 - scheme checked above
        reply: dict[str, Any] = json.loads(response.read().decode())
    return first_firing(reply, after, QUERY_STEP_S)
