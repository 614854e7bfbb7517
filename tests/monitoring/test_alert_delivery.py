"""A real Alertmanager, configured as the role renders it, delivers an alert to the lab's webhook
receiver with the bearer token from its secret file; the drill reads the delivery time back.
Everything on loopback: Debian's prometheus-alertmanager binary and the receiver as processes."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from redis_ha.drill.alerts import FAILOVER_ALERT, alert_delivered_at

from tests.ansible.conftest import REPO, load_plugin
from tests.support.cluster import _free_port

RECEIVER = REPO / "tests" / "molecule" / "shared" / "files" / "alert_receiver" / "alert_receiver.py"
TOKEN = "loopback-receiver-token-0123456789"
START_TIMEOUT_S = 20.0
DELIVERY_TIMEOUT_S = 30.0


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - a loopback URL the test built
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer within {START_TIMEOUT_S:g} s: {log.read_text()[-2000:]}")


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def post(url: str, body: object, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(  # noqa: S310 - a loopback URL the test built
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.integration
def test_alertmanager_delivers_to_the_webhook_receiver_with_its_bearer_token(
    tmp_path: Path, started: list[subprocess.Popen[bytes]]
) -> None:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail("prometheus-alertmanager is not on PATH: install Debian's package (`make system-deps`)")
    (tmp_path / "token").write_text(TOKEN)
    receiver_port, am_port = _free_port(), _free_port()
    receiver_url = f"http://127.0.0.1:{receiver_port}/"
    receiver_log = tmp_path / "receiver.log"
    records = tmp_path / "notifications.jsonl"
    argv = [sys.executable, str(RECEIVER), "127.0.0.1", str(receiver_port), str(records), str(tmp_path / "token")]
    started.append(subprocess.Popen(argv, stdout=receiver_log.open("wb"), stderr=subprocess.STDOUT))
    wait_http(receiver_url, started[-1], receiver_log)
    assert post(receiver_url, {"alerts": []}) == 401  # no token, not recorded

    # The secret directory is the test's; the token file is named as the role writes it.
    (tmp_path / "oncall.token").write_text(TOKEN)
    settings = {
        "receivers": [{"name": "oncall", "webhook_url": receiver_url, "webhook_bearer_token": TOKEN}],
        "routes": [],
        "default_receiver": "oncall",
        "group_by": ["alertname"],
        "group_wait": "1s",
        "group_interval": "5s",
        "repeat_interval": "4h",
    }
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(load_plugin("alertmanager").alertmanager_config(settings, str(tmp_path))))
    assert TOKEN not in config.read_text()
    am_log = tmp_path / "alertmanager.log"
    started.append(
        subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                "--cluster.listen-address=",
            ],
            stdout=am_log.open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    wait_http(f"http://127.0.0.1:{am_port}/-/ready", started[-1], am_log)

    before = time.time()
    starts_at = datetime.datetime.now(datetime.UTC).isoformat()
    alert = {"labels": {"alertname": FAILOVER_ALERT, "instance": "10.0.0.2:9121"}, "startsAt": starts_at}
    assert post(f"http://127.0.0.1:{am_port}/api/v2/alerts", [alert]) == 200
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    delivered = None
    while delivered is None and time.monotonic() < deadline:
        delivered = alert_delivered_at(receiver_url, FAILOVER_ALERT, after=before - 1)
        time.sleep(0.5)
    assert delivered is not None, am_log.read_text()[-3000:]
    assert before <= delivered < before + DELIVERY_TIMEOUT_S
    assert len(records.read_text().splitlines()) == 1  # the unauthenticated post left no record
