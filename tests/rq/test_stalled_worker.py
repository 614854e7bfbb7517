"""A worker that stalls between taking a job and starting it keeps the job: it runs exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rq import Worker

from tests.rq import jobs
from tests.rq.support import ha_queue, wait_until, worker_process
from tests.support.cluster import LoopbackCluster

pytestmark = pytest.mark.integration

STALL_S = 22.0
"""Longer than the old fixed grace (10 s) after which a job not started was put back, seconds."""
STALLED = "tests.rq.stalled_worker"


def test_a_worker_stalled_after_dequeue_keeps_its_job_while_alive_and_runs_it_exactly_once(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record, mark = tmp_path / "executions.txt", tmp_path / "stalled.txt"
    queue = ha_queue(cluster)
    with worker_process(
        cluster, tmp_path / "stalled.log", module=STALLED, TEST_STALL_S=str(STALL_S), TEST_STALL_MARK=str(mark)
    ) as stalled:
        wait_until(lambda: Worker.count(queue.connection) == 1, 30, "the stalling worker to register")
        job = queue.enqueue(jobs.record_where, str(record))
        wait_until(mark.exists, 30, "the worker to take the job and stall")
        stall_ends = time.monotonic() + STALL_S
        with worker_process(cluster, tmp_path / "other.log"):
            wait_until(lambda: Worker.count(queue.connection) == 2, 30, "the second worker to register")
            wait_until(lambda: bool(jobs.records(str(record))), STALL_S + 30, "the job to run")
            # A second run would come from the stalled worker right after its stall: give it time.
            time.sleep(max(0.0, stall_ends - time.monotonic()) + 5.0)
    runs = jobs.records(str(record))
    assert [fields[0] for fields in runs] == [job.id], runs
    assert runs[0][4] == str(stalled.pid), "the job was taken from the live worker that held it"


def test_a_worker_whose_held_job_was_put_back_meanwhile_does_not_run_it_too(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record, mark = tmp_path / "executions.txt", tmp_path / "stalled.txt"
    queue = ha_queue(cluster)
    stall_s = 16.0  # the old grace put it back after 10-13 s, so the old code ran it twice here too
    with worker_process(
        cluster, tmp_path / "stalled.log", module=STALLED, TEST_STALL_S=str(stall_s), TEST_STALL_MARK=str(mark)
    ):
        wait_until(lambda: Worker.count(queue.connection) == 1, 30, "the stalling worker to register")
        job = queue.enqueue(jobs.record_where, str(record))
        wait_until(mark.exists, 30, "the worker to take the job and stall")
        stall_ends = time.monotonic() + stall_s
        # Its registration expiring is what a dead holder looks like: the job is put back.
        (stalled_name,) = [w.name for w in Worker.all(queue.connection)]
        queue.connection.delete(f"rq:worker:{stalled_name}")
        with worker_process(cluster, tmp_path / "other.log") as other:
            wait_until(lambda: bool(jobs.records(str(record))), stall_s + 30, "the job to run")
            time.sleep(max(0.0, stall_ends - time.monotonic()) + 5.0)
    runs = jobs.records(str(record))
    assert [fields[0] for fields in runs] == [job.id], runs
    assert runs[0][4] == str(other.pid)
    assert "leaving it to the worker that has it now" in (tmp_path / "stalled.log").read_text()
