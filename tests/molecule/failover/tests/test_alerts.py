"""Scenario failover: the failover alert fired in Prometheus and its notification reached the lab's
webhook receiver on app1 (Alertmanager, as deployed, with the receiver's bearer token).

Prints the drill report's alert rows, counted from the kill (side_effect.yml notes when it was).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from redis_ha.drill import report
from redis_ha.drill.alerts import FAILOVER_ALERT, alert_delivered_at, alert_firing_at

from tests.molecule.conftest import DRILL_DIR, Lab

pytestmark = pytest.mark.lab

PROMETHEUS_PORT = 9090
RECEIVER_PORT = 9199
ALERT_WAIT_S = 120.0
"""The alert fires 30 s (its `for:`) after a scrape sees the promoted node; delivery takes group_wait more."""


def wait_for_time(read: Callable[[], float | None], timeout_s: float = ALERT_WAIT_S) -> float | None:
    """``read()`` every 5 s until it returns a time, at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        at = read()
        if at is not None or time.monotonic() > deadline:
            return at
        time.sleep(5)


@pytest.mark.units("prometheus", "prometheus-alertmanager", "alert-receiver")
def test_the_failover_alert_fired_and_reached_the_webhook_receiver(lab: Lab) -> None:
    broke = float(lab.host("app1").file(f"{DRILL_DIR}/broke_at").content_string)
    prometheus = f"http://{lab.ips['app1']}:{PROMETHEUS_PORT}"
    receiver = f"http://{lab.ips['app1']}:{RECEIVER_PORT}/"
    fired = wait_for_time(lambda: alert_firing_at(prometheus, FAILOVER_ALERT, broke - 60, time.time(), after=broke))
    delivered = wait_for_time(lambda: alert_delivered_at(receiver, FAILOVER_ALERT, broke)) if fired else None
    rows = report.alert_rows(
        None if fired is None else fired - broke,
        f"{FAILOVER_ALERT} did not fire within {ALERT_WAIT_S:g} s",
        None if delivered is None else delivered - broke,
        f"{FAILOVER_ALERT} did not reach {receiver} within {ALERT_WAIT_S:g} s",
    )
    for name, value in rows:
        print(f"failover drill: {name:16} {value}")
    assert fired is not None, rows
    assert delivered is not None, rows
    assert delivered >= fired, rows
