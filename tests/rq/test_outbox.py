"""The on-disk outbox: order, no doubles, survives reopening."""

from __future__ import annotations

from pathlib import Path

from redis_ha.outbox import Outbox, OutboxEntry
from rq.job import JobStatus


def test_entries_come_back_in_order_with_their_data_after_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    for i in range(5):
        mapping = {"data": b"\x00\xff", "n": i, "s": "x", "status": JobStatus.QUEUED}
        box.add(OutboxEntry(job_id=f"j{i}", queue="q", mapping=mapping))
    box.close()
    again = Outbox(path)
    entries = again.peek(10)
    assert [e.job_id for e in entries] == ["j0", "j1", "j2", "j3", "j4"]
    assert entries[0].mapping == {"data": b"\x00\xff", "n": 0, "s": "x", "status": "queued"}
    again.remove([e.seq for e in entries[:2]])
    assert [e.job_id for e in again.peek(10)] == ["j2", "j3", "j4"]


def test_the_same_job_is_stored_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    assert box.add(OutboxEntry(job_id="j", queue="q", mapping={}))
    assert not box.add(OutboxEntry(job_id="j", queue="q", mapping={}))
    assert len(box) == 1
