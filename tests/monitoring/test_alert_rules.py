"""The alert rules load in Prometheus, and each alert fires when it should and only then (promtool)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.ansible.conftest import REPO
from tests.monitoring.conftest import ALERTS_TEST, render
from tests.monitoring.conftest import promtool as run_promtool
from tests.monitoring.promql import KNOWN_METRICS, WORKER_METRICS, metric_names

SEVERITIES = {"critical", "warning"}


def alert_rules(text: str) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_accepts_the_rendered_rules(rules_dir: Path) -> None:
    result = run_promtool("check", "rules", rules_dir / "prometheus-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass(rules_dir: Path) -> None:
    result = run_promtool("test", "rules", ALERTS_TEST.name, cwd=rules_dir)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_delay_a_severity_and_a_runbook_hint(rendered: dict[str, str]) -> None:
    for rule in alert_rules(rendered["prometheus-alerts.yml"]):
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name} has no for:"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["redis_ha_env"] == "lab", name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name


def test_every_alert_is_unit_tested_firing_and_not_firing(rendered: dict[str, str]) -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules(rendered["prometheus-alerts.yml"])}
    assert names - firing == set(), "alerts never seen firing in alerts_test.yml"
    assert names - quiet == set(), "alerts never seen staying quiet in alerts_test.yml"
    assert (firing | quiet) - names == set(), "alerts_test.yml tests alerts that no longer exist"


def test_rules_only_use_metrics_the_exporter_or_the_worker_serve(rendered: dict[str, str]) -> None:
    unknown = {
        rule["alert"]: metric_names(rule["expr"]) - KNOWN_METRICS
        for rule in alert_rules(rendered["prometheus-alerts.yml"])
        if metric_names(rule["expr"]) - KNOWN_METRICS
    }
    assert unknown == {}


def test_the_worker_still_defines_the_metrics_the_rules_expect() -> None:
    # prometheus-client adds _total to counter names; the worker declares them without it.
    source = (REPO / "client" / "redis_ha" / "metrics.py").read_text()
    missing = {name for name in WORKER_METRICS if f'"{name.removesuffix("_total")}"' not in source}
    assert missing == set(), "rename them in templates/prometheus-alerts.yml.j2 and the dashboard too"


def test_thresholds_quorum_and_master_name_come_from_the_inventory(tmp_path: Path) -> None:
    text = render(
        tmp_path,
        redis_ha_environment="production",
        redis_ha_master_name="orders",
        sentinel_quorum=3,
        monitoring_alert_memory_ratio=0.8,
        monitoring_alert_rq_queue_depth=50,
    )["prometheus-alerts.yml"]
    rules = {rule["alert"]: rule for rule in alert_rules(text)}
    assert rules["SentinelBelowQuorum"]["expr"].endswith("< 3")
    assert 'master_name="orders"' in rules["SentinelsDisagreeOnMaster"]["expr"]
    assert 'job="redis-ha-production-redis"' in rules["RedisDown"]["expr"]
    assert rules["RedisMemoryNearLimit"]["expr"].rstrip().endswith("> 0.8")
    assert "above 80% of maxmemory" in rules["RedisMemoryNearLimit"]["annotations"]["description"]
    assert rules["RQQueueBacklog"]["expr"].endswith("> 50")
    result = run_promtool("check", "rules", _write(tmp_path / "rules.yml", text))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_quorum_defaults_to_a_majority_of_the_sentinels(rendered: dict[str, str]) -> None:
    rules = {rule["alert"]: rule for rule in alert_rules(rendered["prometheus-alerts.yml"])}
    assert rules["SentinelBelowQuorum"]["expr"].endswith("< 2")
    assert rules["SentinelPeersMissing"]["expr"].endswith("< 3")
    assert rules["RedisReplicasMissing"]["expr"].rstrip().endswith("< 2")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
