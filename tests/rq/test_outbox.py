"""The on-disk outbox: order, no doubles, survives reopening."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
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


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_outbox_and_its_directory_are_private_to_their_user(tmp_path: Path) -> None:
    path = tmp_path / "state" / "app" / "outbox.db"
    box = Outbox(path)
    box.add(OutboxEntry(job_id="j", queue="q", mapping={"secret": "s3cret"}))
    assert mode(path.parent) == 0o700
    assert mode(path.parent.parent) == 0o700
    assert mode(path) == 0o600
    assert mode(path.with_name("outbox.db-wal")) == 0o600


def test_an_existing_outbox_directory_open_to_others_is_left_as_it_is_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="redis_ha.outbox"):
        Outbox(directory / "outbox.db")
    assert mode(directory) == 0o755
    assert any(str(directory) in r.getMessage() and "chmod 700" in r.getMessage() for r in caplog.records)
    assert mode(directory / "outbox.db") == 0o600
