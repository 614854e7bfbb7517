"""The alertmanager role: configs `amtool check-config` accepts for several inventories, a preflight
that names every mistake at once, secrets kept out of the config, and a private listen address."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.conftest import PLAYBOOKS as ANSIBLE_PLAYBOOKS
from tests.ansible.conftest import cluster_hosts, load_plugin, run_playbook, write_inventory
from tests.monitoring.conftest import BASE_VARS, PLAYBOOKS

SECRETS_DIR = "/etc/prometheus/alertmanager-secrets"
TOKEN = "tok-0123456789abcdef-SECRET"
PASSWORD = "pw-0123456789abcdef-SECRET"

# A few inventories a user would write, from none to every kind of receiver.
INVENTORIES: dict[str, dict[str, Any]] = {
    "no receivers": {},
    "webhook with a bearer token": {
        "alertmanager_receivers": [
            {"name": "oncall", "webhook_url": "https://alerts.example.com/hook", "webhook_bearer_token": TOKEN}
        ],
        "alertmanager_default_receiver": "oncall",
        "alertmanager_group_wait": "10s",
    },
    "routes to webhook, email and Slack": {
        "alertmanager_receivers": [
            {
                "name": "pager",
                "webhook_url": "http://10.1.0.50:8080/alert",
                "webhook_basic_auth_username": "alertmanager",
                "webhook_basic_auth_password": PASSWORD,
                "send_resolved": False,
            },
            {
                "name": "ops-mail",
                "configs": {
                    "email_configs": [
                        {
                            "to": "ops@example.com",
                            "from": "alertmanager@example.com",
                            "smarthost": "smtp.example.com:587",
                            "auth_username": "alertmanager",
                            "auth_password": "mail-secret",
                        }
                    ]
                },
            },
            {
                "name": "chat",
                "configs": {"slack_configs": [{"api_url_file": f"{SECRETS_DIR}/slack.url", "channel": "#redis"}]},
            },
        ],
        "alertmanager_routes": [
            {"receiver": "pager", "matchers": ['severity="critical"'], "continue": True},
            {"receiver": "ops-mail", "matchers": ['redis_ha_env=~"prod.*"', 'alertname!="Watchdog"']},
            {"receiver": "chat", "matchers": ['severity="warning"'], "repeat_interval": "12h"},
        ],
    },
}


def amtool() -> str:
    found = shutil.which("amtool")
    if not found:
        pytest.fail("amtool is not on PATH: install Debian's prometheus-alertmanager package (`make system-deps`)")
    return found


def alertmanager_inventory(directory: Path, monitoring_hosts: int = 1) -> Path:
    hosts = cluster_hosts()
    hosts["monitoring"] = {
        "hosts": {f"mon{i}": {"ansible_host": f"10.1.0.{29 + i}"} for i in range(1, monitoring_hosts + 1)}
    }
    return write_inventory(directory / "inventory", hosts, {})


def render(directory: Path, monitoring_hosts: int = 1, **overrides: Any) -> dict[str, dict[str, str]]:
    """{monitoring host: {file name: text}} of the role's templates for this inventory."""
    out = directory / "out"
    out.mkdir(parents=True)
    result = run_playbook(
        PLAYBOOKS / "render_alertmanager.yml",
        alertmanager_inventory(directory, monitoring_hosts),
        {**BASE_VARS, **overrides, "render_dir": str(out)},
    )
    assert result.ok, result.output
    assert TOKEN not in result.output and PASSWORD not in result.output
    return {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}


def flags(text: str) -> list[str]:
    line = next(line for line in text.splitlines() if line.startswith("ARGS="))
    return shlex.split(line.removeprefix("ARGS="))[0].split()


@pytest.mark.parametrize("name", list(INVENTORIES))
def test_amtool_check_config_accepts_the_rendered_config(name: str, tmp_path: Path) -> None:
    texts = render(tmp_path, **INVENTORIES[name])["mon1"]
    config = tmp_path / "alertmanager.yml"
    config.write_text(texts["alertmanager.yml"])
    result = subprocess.run(
        [amtool(), "check-config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = len(INVENTORIES[name].get("alertmanager_receivers", [])) + 1  # and "none"
    assert f" - {receivers} receivers" in result.stdout, result.stdout
    assert texts["alertmanager.yml"].startswith("#\n# Ansible managed\n#\n# ")


def test_routes_receivers_and_intervals_follow_the_inventory(tmp_path: Path) -> None:
    config = yaml.safe_load(
        render(tmp_path, **INVENTORIES["routes to webhook, email and Slack"])["mon1"]["alertmanager.yml"]
    )
    route = config["route"]
    assert route["receiver"] == "none"
    assert (route["group_by"], route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        ["alertname", "redis_ha_env"],
        "30s",
        "5m",
        "4h",
    )
    assert [(r["receiver"], r["matchers"]) for r in route["routes"]] == [
        ("pager", ['severity="critical"']),
        ("ops-mail", ['redis_ha_env=~"prod.*"', 'alertname!="Watchdog"']),
        ("chat", ['severity="warning"']),
    ]
    assert route["routes"][0]["continue"] is True
    assert route["routes"][2]["repeat_interval"] == "12h"
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["none"] == {"name": "none"}
    assert receivers["pager"]["webhook_configs"] == [
        {
            "url": "http://10.1.0.50:8080/alert",
            "send_resolved": False,
            "http_config": {
                "basic_auth": {"username": "alertmanager", "password_file": f"{SECRETS_DIR}/pager.password"}
            },
        }
    ]
    assert receivers["ops-mail"]["email_configs"][0]["smarthost"] == "smtp.example.com:587"
    assert receivers["chat"]["slack_configs"][0]["channel"] == "#redis"


def test_webhook_secrets_are_files_never_in_the_config(tmp_path: Path) -> None:
    text = render(tmp_path, **INVENTORIES["webhook with a bearer token"])["mon1"]["alertmanager.yml"]
    assert TOKEN not in text
    hook = yaml.safe_load(text)["receivers"][1]["webhook_configs"][0]
    assert hook["http_config"] == {
        "authorization": {"type": "Bearer", "credentials_file": f"{SECRETS_DIR}/oncall.token"}
    }
    plugin = load_plugin("alertmanager")
    receivers = INVENTORIES["routes to webhook, email and Slack"]["alertmanager_receivers"]
    assert plugin.secret_files(receivers, SECRETS_DIR) == [
        {"path": f"{SECRETS_DIR}/pager.password", "key": "webhook_basic_auth_password", "receiver": "pager"}
    ]


def test_alertmanager_listens_on_the_private_address_and_clusters_only_with_peers(tmp_path: Path) -> None:
    single = flags(render(tmp_path / "one")["mon1"]["alertmanager.default"])
    assert "--web.listen-address=10.1.0.30:9093" in single
    assert "--config.file=/etc/prometheus/alertmanager.yml" in single
    assert "--cluster.listen-address=" in single  # clustering off, not Debian's 0.0.0.0:9094
    pair = render(tmp_path / "two", monitoring_hosts=2)
    first, second = flags(pair["mon1"]["alertmanager.default"]), flags(pair["mon2"]["alertmanager.default"])
    assert "--cluster.listen-address=10.1.0.30:9094" in first and "--cluster.peer=10.1.0.31:9094" in first
    assert "--cluster.listen-address=10.1.0.31:9094" in second and "--cluster.peer=10.1.0.30:9094" in second


def test_the_preflight_reports_every_problem_at_once_without_showing_a_secret(tmp_path: Path) -> None:
    bad = {
        "alertmanager_receivers": [
            {"name": "oncall", "webhook_url": "ftp://alerts.example.com", "webhook_bearer_token": TOKEN},
            {"name": "oncall", "webhook_url": "https://user:pw@hooks.example.com/x"},
            {"name": "bad name", "webhok_url": "https://x.example.com"},
            {"name": "half", "webhook_url": "https://x.example.com", "webhook_basic_auth_username": "u"},
        ],
        "alertmanager_routes": [
            {"receiver": "pagerduty", "matchers": ['severity="critical"']},
            {"receiver": "oncall", "matchers": ["severity=critical"]},
        ],
        "alertmanager_default_receiver": "nobody",
        "alertmanager_group_wait": "soon",
        "alertmanager_cluster_port": 9093,
    }
    out = tmp_path / "out"
    out.mkdir()
    result = run_playbook(
        PLAYBOOKS / "render_alertmanager.yml",
        alertmanager_inventory(tmp_path),
        {**BASE_VARS, **bad, "render_dir": str(out)},
    )
    assert not result.ok
    for expected in (
        "receiver 'oncall': webhook_url is 'ftp://alerts.example.com': use an http:// or https:// URL",
        "receiver 'oncall': webhook_url carries a user or password in the URL",
        "receiver name(s) oncall are used twice",
        "receiver 'bad name' has unknown key(s) webhok_url",
        "receiver 'bad name' has name 'bad name'",
        "receiver 'half': set webhook_basic_auth_username and webhook_basic_auth_password together",
        "alertmanager_routes[0] sends to receiver 'pagerduty', which alertmanager_receivers does not define",
        "alertmanager_routes[1]: matcher",
        "alertmanager_default_receiver is 'nobody'",
        "alertmanager: group_wait is 'soon'",
        "alertmanager_port and alertmanager_cluster_port are the same",
    ):
        assert expected in result.output, expected
    assert TOKEN not in result.output
    assert list(out.iterdir()) == []  # nothing rendered, nothing touched


# Defaults and argument specs in step: tests/ansible/test_argument_specs.py (ROLE_NAMES).


def test_a_bad_variable_fails_with_its_argument_spec_message() -> None:
    result = run_playbook(
        ANSIBLE_PLAYBOOKS / "validate_spec.yml",
        None,
        {"spec_role": "alertmanager", "spec_arguments": {"alertmanager_receivers": "oncall"}},
    )
    assert not result.ok
    assert "alertmanager_receivers" in result.output and "list" in result.output
