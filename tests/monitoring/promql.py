"""Metric names the monitoring files may use, and a small PromQL scanner to find the ones they do.

``EXPORTER_METRICS`` is what a real redis_exporter 1.45 (Debian's) served for a Redis 7.0 master,
a replica and a Sentinel (``redis_exporter_1.45.metrics``; ``test_exporter_metrics.py`` re-checks
the ones in use against a live exporter). ``WORKER_METRICS`` is what ``redis-ha worker
--metrics-port`` is expected to serve (``test_alert_rules.py`` checks client/redis_ha/metrics.py
still defines them). A panel or rule naming anything else is a typo or a rename.
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent

EXPORTER_METRICS = frozenset(
    line.split()[0]
    for line in (HERE / "redis_exporter_1.45.metrics").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
WORKER_METRICS = frozenset(
    {
        "redis_ha_rq_jobs_done_total",
        "redis_ha_rq_jobs_failed_total",
        "redis_ha_rq_reconnects_total",
        "redis_ha_failovers_seen_total",
        "redis_ha_rq_queue_depth",
        "redis_ha_rq_outbox_size",
        "redis_ha_rq_scrape_ok",
    }
)
PROMETHEUS_METRICS = frozenset({"up", "ALERTS"})
KNOWN_METRICS = EXPORTER_METRICS | WORKER_METRICS | PROMETHEUS_METRICS

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")

# What Grafana puts in place of its variables, so promtool can parse a panel's query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h", "$env": "lab"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords and labels left out)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _GRAFANA_VARIABLE.sub(" ", text)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if not match.group(2) and match.group(1).lower() not in _KEYWORDS
    }


def substitute_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr
