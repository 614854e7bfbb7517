"""Drills against a real loopback cluster: refusals, the restore path, and a kill-master drill end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path

import pytest
import redis_ha
from redis_ha.config import Address
from redis_ha.drill.kinds import Plan
from redis_ha.drill.orchestrator import EXIT_OK, EXIT_REFUSED, DrillOptions, run_drill

from tests.drill.loopback import LoopbackBackend
from tests.support.cluster import LoopbackCluster

pytestmark = pytest.mark.integration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def options(tmp_path: Path, kind: str, **changes: object) -> DrillOptions:
    values: dict[str, object] = {
        "kind": kind,
        "env": "loopback",
        "out_dir": tmp_path / "drill",
        "warmup_s": 2.0,
        "hold_s": 2.0,
        "settle_s": 1.0,
        "alert_wait_s": 0.0,
        "drain_timeout_s": 30.0,
    }
    values |= changes
    return DrillOptions(**values)  # type: ignore[arg-type]


def process_state(pid: int | None) -> str:
    assert pid is not None
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_an_unhealthy_cluster_makes_the_drill_refuse_naming_the_reason(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    cluster.stop_node(cluster.replica_nodes()[0])
    outcome = run_drill(LoopbackBackend(cluster), options(tmp_path, "kill-master"))
    assert outcome.code == EXIT_REFUSED
    assert outcome.refusal is not None
    assert outcome.refusal.startswith("refusing to start: the cluster is degraded: 1 of 2 replicas are connected")
    assert not (tmp_path / "drill" / "traffic.log").exists(), "no traffic may start on a refused drill"


class StubBackend:
    """A backend for a cluster that does not exist: any attempt to touch it would fail loudly."""

    name = "stub"

    def client_env(self) -> dict[str, str]:
        return {"REDIS_SENTINELS": "127.0.0.1:1", "REDIS_MASTER_NAME": "mymaster"}

    def backup(self) -> str:
        raise AssertionError("a refused drill must not take a backup")

    def break_(self, plan: Plan, target: Address | None) -> str:
        raise AssertionError("a refused drill must not break anything")

    def restore(self, plan: Plan, target: Address | None) -> str:
        raise AssertionError("a refused drill has nothing to restore")

    def prometheus_url(self) -> tuple[str | None, str]:
        return None, "stub"

    def alert_receiver_url(self) -> tuple[str | None, str]:
        return None, "stub"


def test_production_without_confirm_is_refused_before_the_cluster_is_touched(tmp_path: Path) -> None:
    outcome = run_drill(StubBackend(), options(tmp_path, "kill-master", env="production"))
    assert outcome.code == EXIT_REFUSED
    assert outcome.refusal is not None and "CONFIRM=yes" in outcome.refusal


def test_total_loss_outside_the_lab_without_confirm_is_refused_before_the_cluster_is_touched(tmp_path: Path) -> None:
    outcome = run_drill(StubBackend(), options(tmp_path, "total-loss", env="staging"))
    assert outcome.code == EXIT_REFUSED
    assert outcome.refusal is not None and "wipe" in outcome.refusal and "CONFIRM=yes" in outcome.refusal


class FailingAfterBreak(LoopbackBackend):
    """Breaks for real, then fails as a flaky SSH connection would, before the drill can go on."""

    def break_(self, plan: Plan, target: Address | None) -> str:
        super().break_(plan, target)
        raise RuntimeError("injected failure right after the break")


def test_a_drill_that_fails_after_freezing_the_master_still_thaws_it_and_says_so(
    cluster: LoopbackCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    master = cluster.master_node()
    outcome = run_drill(FailingAfterBreak(cluster), options(tmp_path, "freeze-master", hold_s=0.0))
    assert process_state(master.pid) != "T", "the master is still frozen (SIGSTOP)"
    assert not master.frozen
    assert outcome.code != EXIT_OK
    assert "the break itself failed: RuntimeError: injected failure right after the break" in outcome.reasons
    assert f"restored what it broke: thawed {master.name}" in capsys.readouterr().out
    cluster.wait_healthy(30)


class SigtermAfterBreak(LoopbackBackend):
    """Breaks for real, then the drill gets SIGTERM (as from `kill` or a CI timeout) a moment later."""

    def break_(self, plan: Plan, target: Address | None) -> str:
        done = super().break_(plan, target)
        threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
        return done


def test_sigterm_during_a_freeze_master_drill_thaws_the_master_then_reports(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    master = cluster.master_node()
    outcome = run_drill(SigtermAfterBreak(cluster), options(tmp_path, "freeze-master", hold_s=30.0))
    assert process_state(master.pid) != "T", "the master is still frozen (SIGSTOP)"
    assert any(r.startswith("the drill was interrupted (SIGTERM") for r in outcome.reasons), outcome.reasons
    assert outcome.summary is not None and outcome.summary.restored is True
    assert (tmp_path / "drill" / "report.json").exists()


def test_kill_master_drill_loses_no_job_and_writes_a_table_json_and_png(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    outcome = run_drill(LoopbackBackend(cluster), options(tmp_path, "kill-master"))
    out = tmp_path / "drill"
    print(outcome.table)
    assert outcome.summary is not None
    assert outcome.summary.lost == 0
    assert outcome.summary.acknowledged > 50
    assert outcome.summary.finished == outcome.summary.acknowledged
    assert outcome.summary.failover_s is not None
    assert outcome.summary.restored is True
    assert outcome.summary.recovered_s is not None
    assert outcome.code == EXIT_OK, outcome.table
    assert re.search(r"^jobs lost +0 \(SLO <= 0\)$", (out / "report.txt").read_text(), re.MULTILINE)
    data = json.loads((out / "report.json").read_text())
    assert data["slo_met"] is True and data["summary"]["lost"] == 0
    png = (out / "timeline.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    client = redis_ha.connect(env=cluster.env())
    try:
        assert not [q for q in client.smembers("rq:queues") if b"drill-" in q], "the drill left its queue behind"
    finally:
        client.close()
