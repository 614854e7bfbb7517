"""Scenario backup: scheduled backups from a replica, shipped to app1, restore, and the total-loss drill.

Prints the drill's rows (producer errors, acknowledged, finished, lost) and the total-loss figures:
how many acknowledged jobs came back from the backup (acknowledged before it vs after it) and how long
the restore took.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.molecule.conftest import REDIS_HOSTS, REPO, Drill, Lab, assert_cluster_agrees, drill_summary, run_playbook

pytestmark = pytest.mark.lab

BACKUP_DIR = "/var/backups/redis-ha"


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "backup", "/var/lib/redis-ha-app/drill-backup")


@pytest.fixture(scope="module")
def total_loss() -> dict[str, Any]:
    figures: dict[str, Any] = json.loads(
        (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "total-loss.json").read_text()
    )
    print(
        "total-loss drill: acked_before_backup={acked_before_backup} came_back={came_back_before_backup} "
        "acked_during_backup={acked_during_backup} came_back={came_back_during_backup} "
        "acked_after_backup={acked_after_backup} came_back={came_back_after_backup} restore={restore_s}s".format(
            **figures
        )
    )
    print("\n".join(figures["restore_report"]))
    return figures


def records(lab: Lab) -> list[dict[str, Any]]:
    host = lab.host("app1")
    names = host.run("ls %s", BACKUP_DIR).stdout.split()
    return [json.loads(host.file(f"{BACKUP_DIR}/{name}").content_string) for name in names if name.endswith(".json")]


def test_backups_were_taken_from_a_replica_and_shipped_to_the_backup_host(lab: Lab) -> None:
    found = records(lab)
    for record in found:
        source = f"{record['source_node']} ({record['source_role']})"
        server = f"{record['flavor']} {record['server_version']} RDB v{record['rdb_version']}"
        print(f"backup {record['time']} from {source} {server} keys={record['keys']}")
    assert len(found) == 3, "backup_keep is 3: the scheduled one, make backup's, the drill's (pruned to 3)"
    assert {r["source_role"] for r in found} == {"slave"}, found


def test_each_shipped_backup_matches_its_checksum(lab: Lab) -> None:
    host = lab.host("app1")
    result = host.run("cd %s && sha256sum -c *.rdb.sha256", BACKUP_DIR)
    assert result.rc == 0, result.stdout + result.stderr
    assert host.file(BACKUP_DIR).mode == 0o750


def test_make_status_shows_the_backups_and_their_age(lab: Lab) -> None:
    proc = run_playbook(REPO / "ansible" / "status.yml")
    assert proc.returncode == 0, proc.stdout[-3000:]
    text = " ".join(proc.stdout.replace("''", "'").split())
    pattern = r"app1 \(backup host\): (\d+) backup\(s\) in \S+; newest (\S+), ([0-9.]+) h old, from (\S+)"
    shown = re.search(pattern, text)
    print(shown.group(0) if shown else text[-2000:])
    assert shown, "make status does not show the backup host's backups"
    assert int(shown.group(1)) == len(records(lab))
    assert float(shown.group(3)) < 1.0
    assert "OLDER THAN" not in text
    for name in REDIS_HOSTS:
        assert f"{name} (waiting in the spool): no complete backup" in text


@pytest.mark.parametrize("name", REDIS_HOSTS)
def test_the_backup_timer_is_scheduled_and_nothing_waits_in_the_spool(lab: Lab, name: str) -> None:
    host = lab.host(name)
    assert host.service("redis-ha-backup.timer").is_running
    assert host.run("ls -A /var/lib/redis-ha-backup").stdout.strip() == ""
    assert host.file("/etc/redis-ha-backup/password").mode == 0o600


def test_every_job_acknowledged_before_the_backup_came_back(total_loss: dict[str, Any]) -> None:
    assert total_loss["acked_before_backup"] > 0
    assert total_loss["came_back_before_backup"] == total_loss["acked_before_backup"]


def test_the_drill_surfaced_the_outage_and_lost_only_jobs_acknowledged_after_the_backup(
    drill: Drill, total_loss: dict[str, Any]
) -> None:
    lost_allowed = total_loss["acked_during_backup"] + total_loss["acked_after_backup"]
    assert len(drill.lost) <= lost_allowed, (drill.lost[:5], total_loss)
    assert drill.acknowledged > total_loss["acked_before_backup"]


def test_the_restored_cluster_agrees_on_its_master(lab: Lab, drill: Drill) -> None:
    assert_cluster_agrees(lab, drill.master_final)
