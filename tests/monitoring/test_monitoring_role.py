"""The monitoring role's templates: a prometheus.yml promtool accepts, scraping every exporter on
its private address, and a Prometheus that listens on the private address only."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.conftest import PLAYBOOKS as ANSIBLE_PLAYBOOKS
from tests.ansible.conftest import run_playbook
from tests.monitoring.conftest import BASE_VARS, PLAYBOOKS, monitoring_inventory, promtool, render
from tests.support.cluster import _free_port

RULES_PATH = "/etc/prometheus/redis-ha-alerts.yml"


def scrape_jobs(text: str) -> dict[str, dict[str, Any]]:
    return {job["job_name"]: job for job in yaml.safe_load(text)["scrape_configs"]}


def targets(job: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(target, group["labels"].get("node")) for group in job["static_configs"] for target in group["targets"]]


def prometheus_args(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("ARGS="))
    return shlex.split(line.removeprefix("ARGS="))[0].split()


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """No RQ workers scraped; Alertmanager, an extra job, a size cap and an external URL set."""
    return render(
        tmp_path_factory.mktemp("monitoring-variant"),
        monitoring_rq_worker_metrics_port=0,
        monitoring_alertmanagers=["10.1.0.40:9093"],
        monitoring_extra_scrape_configs=[{"job_name": "node", "static_configs": [{"targets": ["10.1.0.11:9100"]}]}],
        monitoring_retention_size="5GB",
        monitoring_prometheus_external_url="http://prometheus.example:9090/",
    )


@pytest.mark.parametrize("which", ["rendered", "variant"])
def test_promtool_check_config_accepts_prometheus_yml(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    texts: dict[str, str] = request.getfixturevalue(which)
    rules = tmp_path / "redis-ha-alerts.yml"
    rules.write_text(texts["prometheus-alerts.yml"])
    config = tmp_path / "prometheus.yml"
    config.write_text(texts["prometheus.yml"].replace(RULES_PATH, str(rules)))
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(group["rules"]) for group in yaml.safe_load(texts["prometheus-alerts.yml"])["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout  # the rules file really was loaded


def test_templates_start_with_the_ansible_managed_header(rendered: dict[str, str]) -> None:
    for name in ("prometheus.yml", "prometheus.default", "prometheus-alerts.yml"):
        assert rendered[name].startswith("#\n# Ansible managed\n#\n# "), name


def test_every_redis_sentinel_and_worker_is_scraped_on_its_private_address(rendered: dict[str, str]) -> None:
    config = yaml.safe_load(rendered["prometheus.yml"])
    jobs = scrape_jobs(rendered["prometheus.yml"])
    assert config["rule_files"] == [RULES_PATH]
    assert targets(jobs["redis-ha-lab-redis"]) == [
        ("10.1.0.11:9121", "node1"),
        ("10.1.0.12:9121", "node2"),
        ("10.1.0.13:9121", "node3"),
    ]
    assert targets(jobs["redis-ha-lab-sentinel"]) == [
        ("10.1.0.11:9355", "node1"),
        ("10.1.0.12:9355", "node2"),
        ("10.1.0.13:9355", "node3"),
    ]
    assert targets(jobs["redis-ha-lab-rq"]) == [("10.1.0.21:9200", "app1")]
    assert targets(jobs["prometheus"]) == [("10.1.0.30:9090", "localhost")]
    for name in ("redis-ha-lab-redis", "redis-ha-lab-sentinel", "redis-ha-lab-rq"):
        for group in jobs[name]["static_configs"]:
            assert group["labels"]["redis_ha_env"] == "lab"
            assert group["labels"]["redis_ha_master_name"] == "mymaster"


def test_jobs_match_the_scrape_config_written_for_an_existing_prometheus(rendered: dict[str, str]) -> None:
    # The alert rules select by job name, so both ways of scraping must use the same names and targets.
    ours = scrape_jobs(rendered["prometheus.yml"])
    snippet = {job["job_name"]: job for job in yaml.safe_load(rendered["prometheus-scrape.yml"])}
    for name, job in snippet.items():
        assert [target for target, _ in targets(ours[name])] == job["static_configs"][0]["targets"]


def test_optional_parts_follow_the_variables(variant: dict[str, str]) -> None:
    config = yaml.safe_load(variant["prometheus.yml"])
    jobs = scrape_jobs(variant["prometheus.yml"])
    assert "redis-ha-lab-rq" not in jobs
    assert jobs["node"]["static_configs"] == [{"targets": ["10.1.0.11:9100"]}]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["10.1.0.40:9093"]
    args = prometheus_args(variant["prometheus.default"])
    assert "--storage.tsdb.retention.size=5GB" in args
    assert "--web.external-url=http://prometheus.example:9090/" in args


def test_prometheus_listens_on_the_private_address_without_admin_or_lifecycle_api(rendered: dict[str, str]) -> None:
    args = prometheus_args(rendered["prometheus.default"])
    assert "--web.listen-address=10.1.0.30:9090" in args
    assert "--config.file=/etc/prometheus/prometheus.yml" in args
    assert "--storage.tsdb.retention.time=15d" in args
    assert not [arg for arg in args if arg.startswith(("--web.enable-admin-api", "--web.enable-lifecycle"))]


def test_alerts_go_to_the_kit_s_alertmanager_on_each_monitoring_host(rendered: dict[str, str]) -> None:
    config = yaml.safe_load(rendered["prometheus.yml"])
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["10.1.0.30:9093"]


def test_no_alertmanagers_keeps_alerts_in_the_ui(tmp_path: Path) -> None:
    assert "alerting" not in yaml.safe_load(render(tmp_path, monitoring_alertmanagers=[])["prometheus.yml"])


def test_the_preflight_reports_every_problem_at_once(tmp_path: Path) -> None:
    bad = {
        "monitoring_prometheus_port": 70000,
        "monitoring_prometheus_extra_args": ["--web.enable-admin-api", "--web.listen-address=0.0.0.0:9090"],
        "monitoring_alert_memory_ratio": 90,
        "monitoring_sentinel_quorum": 4,
        "monitoring_rq_worker_group": "workers",
    }
    result = run_playbook(PLAYBOOKS / "preflight.yml", monitoring_inventory(tmp_path), {**BASE_VARS, **bad})
    assert not result.ok
    for expected in (
        "monitoring_prometheus_port is 70000",
        "monitoring_prometheus_extra_args holds --web.enable-admin-api",
        "monitoring_prometheus_extra_args holds --web.listen-address=0.0.0.0:9090",
        "monitoring_alert_memory_ratio is 90",
        "monitoring_sentinel_quorum is 4 with 3 Sentinel(s)",
        "group workers is empty",
    ):
        assert expected in result.output, expected


def test_the_preflight_passes_the_lab_settings(tmp_path: Path) -> None:
    result = run_playbook(
        PLAYBOOKS / "preflight.yml",
        monitoring_inventory(tmp_path),
        {**BASE_VARS, "monitoring_prometheus_extra_args": ["--query.timeout=1m"]},
    )
    assert result.ok, result.output


# Defaults and argument specs in step: tests/ansible/test_argument_specs.py (ROLE_NAMES).


def test_a_bad_variable_fails_with_its_argument_spec_message() -> None:
    result = run_playbook(
        ANSIBLE_PLAYBOOKS / "validate_spec.yml",
        None,
        {"spec_role": "monitoring", "spec_arguments": {"monitoring_package_state": "newest"}},
    )
    assert not result.ok
    assert "value of monitoring_package_state must be one of: present, latest, got: newest" in result.output


@pytest.mark.integration
def test_prometheus_starts_with_the_rendered_flags_config_and_rules(variant: dict[str, str], tmp_path: Path) -> None:
    """Debian's prometheus binary accepts the flags, loads the config and every rule, and answers."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on PATH: install Debian's prometheus package (`make system-deps`)")
    rules = tmp_path / "redis-ha-alerts.yml"
    rules.write_text(variant["prometheus-alerts.yml"])
    config = tmp_path / "prometheus.yml"
    config.write_text(variant["prometheus.yml"].replace(RULES_PATH, str(rules)))
    port = _free_port()
    args = [
        f"--web.listen-address=127.0.0.1:{port}" if arg.startswith("--web.listen-address=") else arg
        for arg in prometheus_args(variant["prometheus.default"])
    ]
    args = [arg.replace("/etc/prometheus/prometheus.yml", str(config)) for arg in args]
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, *args, f"--storage.tsdb.path={tmp_path / 'data'}"], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        loaded = wait_for_rules(process, port)
        assert loaded, (tmp_path / "prometheus.log").read_text()[-3000:]
        expected = sum(len(group["rules"]) for group in yaml.safe_load(rules.read_text())["groups"])
        assert len(loaded) == expected
        assert {rule["health"] for rule in loaded} <= {"ok", "unknown"}
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_for_rules(process: subprocess.Popen[bytes], port: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """The rules a running Prometheus reports, once it is ready; [] if it exits or never gets ready."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as response:
                groups = json.loads(response.read())["data"]["groups"]
        except OSError:
            time.sleep(0.2)
            continue
        return [rule for group in groups for rule in group["rules"]]
    return []
