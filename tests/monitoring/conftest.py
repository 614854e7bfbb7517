"""Fixtures for the monitoring checks: promtool, and the role's templates rendered on localhost."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import (
    GOOD_PASSWORDS,
    cluster_hosts,
    render_templates,
    write_inventory,
)

HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "playbooks"
ALERTS_TEST = HERE / "alerts_test.yml"

# The lab's shape: three nodes running Redis and Sentinel, one app host that is also the
# monitoring host (localhost here), workers serving metrics on port 9200.
BASE_VARS: dict[str, Any] = {
    **GOOD_PASSWORDS,
    "redis_ha_environment": "lab",
    "redis_ha_master_name": "mymaster",
    "monitoring_rq_worker_metrics_port": 9200,
}


def promtool_path() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not on PATH: install Debian's prometheus package (`make system-deps`)")
    return found


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; the caller asserts on returncode and prints stdout + stderr on failure."""
    return subprocess.run(
        [promtool_path(), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def monitoring_inventory(directory: Path, *, app_hosts: int = 1) -> Path:
    hosts = cluster_hosts()
    hosts["app"] = {"hosts": {f"app{i}": {"ansible_host": f"10.1.0.{20 + i}"} for i in range(1, app_hosts + 1)}}
    hosts["monitoring"] = {
        "hosts": {
            "localhost": {
                "ansible_host": "10.1.0.30",
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            }
        }
    }
    return write_inventory(directory / "inventory", hosts, {})


def render(directory: Path, **overrides: Any) -> dict[str, str]:
    """Render prometheus.yml, /etc/default/prometheus and the alert rules for the monitoring host."""
    inventory = monitoring_inventory(directory)
    return render_templates(PLAYBOOKS / "render.yml", inventory, {**BASE_VARS, **overrides}, directory)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("monitoring-render"))


@pytest.fixture(scope="session")
def rules_dir(tmp_path_factory: pytest.TempPathFactory, rendered: dict[str, str]) -> Path:
    """The rendered rules next to a copy of alerts_test.yml, as promtool test rules expects them."""
    directory = tmp_path_factory.mktemp("monitoring-rules")
    (directory / "prometheus-alerts.yml").write_text(rendered["prometheus-alerts.yml"])
    shutil.copy(ALERTS_TEST, directory / ALERTS_TEST.name)
    return directory
