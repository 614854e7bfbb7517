"""Scenario tls: `make upgrade` to a really newer release of the server packages, while jobs flow.

side_effect.yml published the lab's redis-server, redis-tools and redis-sentinel repacked as
<version>+rhk1 (../shared/bump_packages.yml), started the producer and ran ansible/upgrade.yml.
Prints the drill's summary line.
"""

from __future__ import annotations

import pytest

from tests.molecule.conftest import (
    REDIS_HOSTS,
    WORKER_UNIT,
    Drill,
    Lab,
    assert_master_moved,
    assert_no_acknowledged_job_lost,
    assert_worker_rode_through,
    drill_summary,
)

pytestmark = pytest.mark.lab

PACKAGES = ("redis-server", "redis-tools", "redis-sentinel")
# Each unit and the marker the kit leaves while its restart onto a new package is pending.
UNITS = {
    "redis-server": "/var/lib/redis/.redis-ha-kit-restart-pending",
    "redis-sentinel": "/var/lib/redis/.redis-ha-kit-sentinel-restart-pending",
}


@pytest.fixture(scope="module")
def upgrade(lab: Lab) -> Drill:
    return drill_summary(lab, "upgrade", "/var/lib/redis-ha-app/drill-upgrade")


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_every_node_has_the_newer_release_installed(lab: Lab, name: str) -> None:
    versions = lab.host(name).check_output("dpkg-query -W -f '${Package}=${Version} ' %s %s %s", *PACKAGES).split()
    assert len(versions) == len(PACKAGES) and all(v.endswith("+rhk1") for v in versions), versions


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_every_server_and_sentinel_runs_the_upgraded_files(lab: Lab, name: str) -> None:
    """A process started before dpkg replaced its binary still maps the old, deleted file."""
    host = lab.host(name)
    for unit, marker in UNITS.items():
        pid = host.check_output("systemctl show -p MainPID --value %s", unit)
        assert pid not in ("", "0"), f"{unit} does not run on {name}"
        exe = host.check_output("readlink /proc/%s/exe", pid)
        assert not exe.endswith("(deleted)"), f"{unit} on {name} was not restarted after the upgrade: {exe}"
        assert not host.file(marker).exists, f"{unit} on {name}: a restart is still pending"


@pytest.mark.units(WORKER_UNIT, *UNITS)
def test_the_upgrade_lost_no_acknowledged_job_and_surfaced_no_error(lab: Lab, upgrade: Drill) -> None:
    assert_no_acknowledged_job_lost(upgrade, lab)
    assert upgrade.producer_errors == 0


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_rode_through_the_upgrade(upgrade: Drill) -> None:
    assert_worker_rode_through(upgrade)


def test_the_master_was_failed_over_before_its_node_was_upgraded(upgrade: Drill) -> None:
    assert_master_moved(upgrade, "before", "final")
