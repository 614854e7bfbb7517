"""The total-loss drill: which acknowledged jobs came back from the backup, and when it is refused."""

from __future__ import annotations

from redis_ha.drill import kinds, report, safety, total_loss
from redis_ha.drill.records import Ack, DrillLog, Event, Execution, TrafficRecord


def figures() -> total_loss.TotalLoss:
    # Backup 10-12; wipe at 15; restore 16-30. a, b acked before the backup (a ran at once, b was still
    # queued at the wipe and ran from the restored queue); c during; d after (never ran: lost by design).
    acks = [Ack(job, at - 0.1, at) for job, at in (("a", 5.0), ("b", 9.0), ("c", 11.0), ("d", 14.0))]
    runs = [Execution("a", 5.5, 1), Execution("b", 31.0, 1), Execution("c", 11.5, 1)]
    traffic = TrafficRecord(started=0.0, ended=40.0, rate=1, queue="q", probe_interval_s=0.1, acks=acks,
                            executions=runs)  # fmt: skip
    log = DrillLog(kind="total-loss", env="lab", backend="hosts", traffic_on="controller")
    log.events = [
        Event(10.0, total_loss.BACKUP_START, ""),
        Event(12.0, total_loss.BACKUP_DONE, ""),
        Event(15.0, report.BREAK, ""),
        Event(16.0, report.RESTORE, ""),
        Event(30.0, report.RESTORED, ""),
    ]
    return total_loss.summarize(traffic, log)


def test_jobs_are_counted_by_when_they_were_acknowledged_against_the_backup() -> None:
    got = figures()
    assert (got.acked_before_backup, got.ran_before_backup, got.came_back) == (2, 2, 1)
    assert (got.acked_during_backup, got.ran_during_backup) == (1, 1)
    assert (got.acked_after_backup, got.ran_after_backup) == (1, 0)
    assert got.restore_s == 14.0
    assert total_loss.verdict(got) == []
    assert ("restore took", "14.0 s") in total_loss.rows(got)


def test_a_job_acknowledged_before_the_backup_and_never_run_fails_the_drill() -> None:
    got = figures()
    lost = total_loss.TotalLoss(**{**got.__dict__, "ran_before_backup": 1})
    assert any("acknowledged before the backup never ran" in r for r in total_loss.verdict(lost))


def test_total_loss_outside_the_lab_needs_confirm_yes() -> None:
    plan = kinds.plan_for("total-loss")
    refusal = safety.data_loss_refusal(plan, "staging", None)
    assert refusal is not None and "CONFIRM=yes" in refusal and "wipe" in refusal
    assert safety.data_loss_refusal(plan, "staging", "yes") is None
    assert safety.data_loss_refusal(plan, "lab", None) is None
    assert safety.data_loss_refusal(kinds.plan_for("kill-master"), "staging", None) is None
