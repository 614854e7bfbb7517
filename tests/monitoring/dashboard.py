"""The Grafana dashboard's panels and queries, for the static checks (test_dashboard.py) and the
check against a deployed Prometheus (tests/molecule/failover/tests/test_dashboard_data.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

DASHBOARD = Path(__file__).resolve().parents[2] / "templates" / "grafana-dashboard.json"

FAILOVER_PANELS = frozenset({"Master changes in range (Sentinel)", "Failovers followed by workers", "Failovers"})
"""Panels (and the annotation) that show a failover: above zero, or any data at all, only after one."""


class Query(NamedTuple):
    where: str
    """Panel and target (or annotation), as a failure names it."""
    expr: str
    panel: str
    """The panel's title, or the annotation's name."""


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    """Every panel target and every annotation query."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Query(f"panel {panel['title']!r} target {target['refId']}", target["expr"], panel["title"])
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield Query(f"annotation {annotation['name']!r}", annotation["expr"], annotation["name"])
