"""The Grafana dashboard is valid JSON, every query parses and names only metrics that exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring.conftest import promtool
from tests.monitoring.dashboard import load, panels, queries
from tests.monitoring.promql import KNOWN_METRICS, metric_names, substitute_grafana_variables

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load()


def test_the_data_source_is_a_variable_every_panel_uses(dashboard: dict[str, Any]) -> None:
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["env"]["datasource"] == DATASOURCE
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]


def test_panels_have_unique_ids_and_fit_the_grid(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        position = panel["gridPos"]
        assert position["x"] + position["w"] <= 24, panel["title"]


def test_every_query_names_only_metrics_the_exporter_or_the_worker_serve(dashboard: dict[str, Any]) -> None:
    unknown = {q.where: metric_names(q.expr) - KNOWN_METRICS for q in queries(dashboard)}
    assert {where: names for where, names in unknown.items() if names} == {}


def test_every_query_selects_one_environment_s_scrape_job(dashboard: dict[str, Any]) -> None:
    for where, expr, _ in queries(dashboard):
        assert 'job="redis-ha-$env-' in expr, where


def test_the_dashboard_covers_redis_sentinel_and_rq(dashboard: dict[str, Any]) -> None:
    used = set().union(*(metric_names(q.expr) for q in queries(dashboard)))
    assert {
        "redis_instance_info",
        "redis_master_link_up",
        "redis_connected_slave_offset_bytes",
        "redis_memory_max_bytes",
        "redis_commands_processed_total",
        "redis_connected_clients",
        "redis_rejected_connections_total",
        "redis_sentinel_master_ok_sentinels",
        "redis_sentinel_master_ckquorum_status",
        "redis_sentinel_master_status",
        "redis_sentinel_tilt",
        "redis_ha_rq_queue_depth",
        "redis_ha_rq_jobs_done_total",
        "redis_ha_rq_jobs_failed_total",
        "redis_ha_rq_reconnects_total",
        "redis_ha_failovers_seen_total",
    } <= used


def test_every_query_is_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    # promtool parses each query as a recording rule, with Grafana's variables filled in.
    rules = [
        {"record": f"dashboard:query:{index}", "expr": substitute_grafana_variables(expr)}
        for index, (_, expr, _) in enumerate(queries(dashboard))
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = promtool("check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
