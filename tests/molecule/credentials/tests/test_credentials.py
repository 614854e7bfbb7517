"""Scenario credentials: the upgrade to the Sentinel users and a password rotation, as the apps felt them.

Producer A (the previous release's .env) ran through the upgrade; producer B (the new .env, its
passwords in files) through two rotation deploys. Prints a summary line for each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from tests.molecule.conftest import (
    REDIS_HOSTS,
    REDIS_PORT,
    SENTINEL_PORT,
    WORKER_UNIT,
    Drill,
    Lab,
    assert_no_acknowledged_job_lost,
    assert_worker_rode_through,
    drill_summary,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def upgrade(lab: Lab) -> Drill:
    return drill_summary(lab, "credentials-upgrade", "/var/lib/redis-ha-app/drill-upgrade")


@pytest.fixture(scope="module")
def rotation(lab: Lab) -> Drill:
    return drill_summary(lab, "credentials-rotation", "/var/lib/redis-ha-app/drill-rotation")


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_the_upgrade_lost_no_acknowledged_job_and_surfaced_no_error(upgrade: Drill) -> None:
    assert_no_acknowledged_job_lost(upgrade)
    assert upgrade.producer_errors == 0


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_the_rotation_lost_no_acknowledged_job_and_surfaced_no_error(rotation: Drill) -> None:
    assert_no_acknowledged_job_lost(rotation)
    assert rotation.producer_errors == 0


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_followed_the_rotation_without_a_restart(rotation: Drill) -> None:
    assert_worker_rode_through(rotation)


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_the_old_passwords_are_refused_everywhere(lab: Lab, name: str) -> None:
    old = json.loads((Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "old-passwords.json").read_text())
    for user, port, secret in (
        ("app", REDIS_PORT, "redis_app_password"),
        ("replication", REDIS_PORT, "redis_replication_password"),
        ("exporter", REDIS_PORT, "redis_exporter_password"),
        ("app", SENTINEL_PORT, "sentinel_app_password"),
        ("sentinel-peer", SENTINEL_PORT, "sentinel_peer_password"),
    ):
        client = redis.Redis(lab.ips[name], port, username=user, password=old[secret], socket_timeout=3)
        with pytest.raises(redis.AuthenticationError):
            client.ping()
        fresh = redis.Redis(lab.ips[name], port, username=user, password=lab.secret(secret), socket_timeout=3)
        assert fresh.ping(), f"{user} on {name}:{port} refuses its new password"


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_the_upgraded_sentinels_log_into_each_other_as_the_peer_user(lab: Lab, name: str) -> None:
    with lab.sentinel_client(name) as sentinel:
        links = [c for c in sentinel.client_list() if str(c.get("name", "")).startswith("sentinel-")]
    assert links and {c["user"] for c in links} == {"sentinel-peer"}, links
