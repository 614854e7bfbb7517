"""When did an alert fire? Read from Prometheus's HTTP API (``ALERTS`` series); parsing is pure."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

FAILOVER_ALERT = "RedisFailoverHappened"
QUERY_TIMEOUT_S = 5.0


def first_firing(reply: dict[str, Any], after: float | None = None) -> float | None:
    """The earliest sample time of a ``query_range`` reply over ``ALERTS{alertstate="firing"}``. Pure.

    With ``after``, only alerts that began firing after it count: a series with a sample at or
    before ``after`` was already firing (an earlier failover's alert stays up for a while).
    """
    if reply.get("status") != "success":
        return None
    starts = []
    for series in reply.get("data", {}).get("result", []):
        times = [float(t) for t, _ in series.get("values", [])]
        if times and (after is None or min(times) > after):
            starts.append(min(times))
    return min(starts, default=None)


def alert_firing_at(base_url: str, alert: str, start: float, end: float, after: float | None = None) -> float | None:
    """When ``alert`` first fired between ``start`` and ``end`` (Unix seconds), or None; see ``first_firing``."""
    query = f'ALERTS{{alertname="{alert}",alertstate="firing"}}'
    params = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "1"})
    url = f"{base_url.rstrip('/')}/api/v1/query_range?{params}"
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"Prometheus URL must be http(s): {base_url}")
    with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_S) as response:  # noqa: S310 - scheme checked above
        reply: dict[str, Any] = json.loads(response.read().decode())
    return first_firing(reply, after)
