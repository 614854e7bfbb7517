"""The total-loss drill's own figures: which acknowledged jobs a restore brought back, and how long it took.

A total loss (every node's data wiped) loses, by design, what was acknowledged after the last backup;
what counts is that nothing acknowledged BEFORE it is lost, and how long the cluster took to come back.
The orchestrator records ``backup-start``/``backup-done`` around the backup it takes right before the
wipe; a job acknowledged before ``backup-start`` is in the backup (durable enqueues were on every
replica when acknowledged). Pure functions over the recorded traffic and events.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis_ha.drill.records import DrillLog, TrafficRecord
from redis_ha.drill.report import RESTORE, RESTORED

KIND = "total-loss"
BACKUP_START = "backup-start"
BACKUP_DONE = "backup-done"


@dataclass(frozen=True)
class TotalLoss:
    """Acknowledged jobs by when they were acknowledged against the backup, and whether each ever ran."""

    acked_before_backup: int
    ran_before_backup: int
    """Of those, how many ran at all: before the wipe, or from the restored queue."""
    came_back: int
    """Of those, how many had not run by the wipe and ran after the restore: the backup brought them back."""
    acked_during_backup: int
    ran_during_backup: int
    acked_after_backup: int
    ran_after_backup: int
    restore_s: float | None
    """From the start of the restore to the restored cluster answering, seconds; None: not restored."""

    @property
    def lost_before_backup(self) -> int:
        return self.acked_before_backup - self.ran_before_backup


def _at(log: DrillLog, name: str) -> float | None:
    return next((e.at for e in sorted(log.events, key=lambda e: e.at) if e.name == name), None)


def summarize(traffic: TrafficRecord, log: DrillLog) -> TotalLoss:
    ran = {e.job_id for e in traffic.executions}
    restore, restored = _at(log, RESTORE), _at(log, RESTORED)
    ran_after_restore = {e.job_id for e in traffic.executions if restore is not None and e.at >= restore}
    ran_before_restore = ran - ran_after_restore
    start = _at(log, BACKUP_START)
    done = _at(log, BACKUP_DONE)
    start = start if start is not None else float("-inf")
    done = done if done is not None else start
    before = [a.job_id for a in traffic.acks if a.acked < start]
    during = [a.job_id for a in traffic.acks if start <= a.acked <= done]
    after = [a.job_id for a in traffic.acks if a.acked > done]
    return TotalLoss(
        acked_before_backup=len(before),
        ran_before_backup=sum(1 for j in before if j in ran),
        came_back=sum(1 for j in before if j in ran_after_restore and j not in ran_before_restore),
        acked_during_backup=len(during),
        ran_during_backup=sum(1 for j in during if j in ran),
        acked_after_backup=len(after),
        ran_after_backup=sum(1 for j in after if j in ran),
        restore_s=None if restore is None or restored is None else round(restored - restore, 1),
    )


def verdict(figures: TotalLoss) -> list[str]:
    """Why the total-loss drill failed: a job acknowledged before the backup lost, no restore, or nothing measured."""
    reasons = []
    if figures.acked_before_backup == 0:
        reasons.append("no job was acknowledged before the backup, so the drill measured nothing")
    if figures.lost_before_backup:
        reasons.append(
            f"{figures.lost_before_backup} job(s) acknowledged before the backup never ran: the backup or the "
            "restore lost them"
        )
    if figures.restore_s is None:
        reasons.append("the cluster was not restored from the backup")
    return reasons


def rows(figures: TotalLoss) -> list[tuple[str, str]]:
    restore = "-" if figures.restore_s is None else f"{figures.restore_s:.1f} s"
    return [
        ("acked before the backup / ran", f"{figures.acked_before_backup} / {figures.ran_before_backup}"),
        ("  of which came back from it", f"{figures.came_back} (queued at the wipe, run after the restore)"),
        ("acked during the backup / ran", f"{figures.acked_during_backup} / {figures.ran_during_backup}"),
        ("acked after the backup / ran", f"{figures.acked_after_backup} / {figures.ran_after_backup} (the rest: lost)"),
        ("restore took", restore),
    ]
