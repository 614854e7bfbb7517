"""Scenario failover: every query of the Grafana dashboard (templates/grafana-dashboard.json)
returns data from the deployed Prometheus on app1, and the failover panels show the drill's
failovers. Runs after the drill and the second deploy, on a healthy cluster.

Prints how many panels have data; a query that returns nothing fails the check, naming it.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from typing import Any

import pytest

from tests.molecule.conftest import DRILL_DIR, Lab, wait_for
from tests.monitoring.dashboard import FAILOVER_PANELS, Query, load, queries

pytestmark = pytest.mark.lab

PROMETHEUS_PORT = 9090
QUERY_TIMEOUT_S = 10.0
STEP_S = 5
"""The scenario's scrape and evaluation interval (molecule.yml)."""
# What Grafana puts in place of its variables; $env and $__range come from the scenario.
RATE_INTERVAL = "1m"
DATA_WAIT_S = 30.0
"""A rate needs two scrapes after the second deploy's restarts; wait that long for a late series."""


def evaluate(lab: Lab, query: Query, range_s: int, start: float | None = None) -> list[dict[str, Any]]:
    """The query's result at now (instant), or over [start, now] every STEP_S (range)."""
    expr = query.expr
    for variable, value in {
        "$__rate_interval": RATE_INTERVAL,
        "$__interval": f"{STEP_S}s",
        "$__range": f"{range_s}s",
        "$env": f"molecule-{os.environ.get('MOLECULE_SCENARIO_NAME', 'failover')}",
    }.items():
        expr = expr.replace(variable, value)
    now = time.time()
    if start is None:
        path, params = "query", {"query": expr, "time": f"{now:.3f}"}
    else:
        path, params = "query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{now:.3f}", "step": str(STEP_S)}
    url = f"http://{lab.ips['app1']}:{PROMETHEUS_PORT}/api/v1/{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=QUERY_TIMEOUT_S) as response:
        reply = json.loads(response.read())
    assert reply["status"] == "success", f"{query.where}: {reply}"
    result: list[dict[str, Any]] = reply["data"]["result"]
    return result


def values(result: list[dict[str, Any]]) -> list[float]:
    samples = [s["value"] for s in result if "value" in s] + [v for s in result for v in s.get("values", [])]
    return [float(value) for _, value in samples]


def shows_failover(lab: Lab, query: Query, broke: float) -> bool:
    """A value above zero since the kill. A panel over Grafana's time range gets exactly the time
    since the kill (the deploy's own restarts fail the master over too, earlier); the annotation,
    over its own window, is evaluated at every step since the kill."""
    since_kill_s = int(time.time() - broke)
    if "$__range" in query.expr:
        return any(v > 0 for v in values(evaluate(lab, query, since_kill_s)))
    return any(v > 0 for v in values(evaluate(lab, query, since_kill_s, start=broke)))


@pytest.fixture(scope="module")
def broke(lab: Lab) -> float:
    return float(lab.host("app1").file(f"{DRILL_DIR}/broke_at").content_string)


@pytest.mark.units("prometheus")
def test_every_panel_shows_data_on_the_healthy_cluster(lab: Lab, broke: float) -> None:
    # The failover annotation marks failovers of the last 2 minutes only: it is checked below.
    checked = [q for q in queries(load()) if q.panel != "Failovers"]
    range_s = int(time.time() - broke) + 60
    empty: dict[str, list[str]] = defaultdict(list)

    def all_have_data() -> None:
        empty.clear()
        for query in checked:
            if not evaluate(lab, query, range_s):
                empty[query.panel].append(query.where)
        assert not empty

    try:
        wait_for(all_have_data, timeout_s=DATA_WAIT_S, interval_s=STEP_S)
    finally:
        panels = {q.panel for q in checked}
        print(
            f"failover dashboard: {len(panels) - len(empty)} of {len(panels)} panels show data on the healthy cluster"
        )
    assert not empty, f"queries returning nothing on a healthy cluster: {dict(empty)}"


@pytest.mark.units("prometheus")
def test_the_failover_panels_show_the_failovers(lab: Lab, broke: float) -> None:
    checked = [q for q in queries(load()) if q.panel in FAILOVER_PANELS]
    assert {q.panel for q in checked} == FAILOVER_PANELS  # a renamed panel would go unchecked
    blank = [q for q in checked if not shows_failover(lab, q, broke)]
    shown = len(FAILOVER_PANELS - {q.panel for q in blank})
    print(f"failover dashboard: {shown} of {len(FAILOVER_PANELS)} failover panels show the failovers")
    assert not blank, f"failover panels showing no failover since the kill: {[q.where for q in blank]}"
