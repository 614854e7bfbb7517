"""The real multi-queue ``redis-ha worker high default low``: priority order, and a master kill."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

import pytest
import redis_ha
from redis_ha.rq import worker as worker_module
from redis_ha.rq.connection import RQRedis
from redis_ha.rq.worker import make_worker
from rq.job import Job, JobStatus

from tests.rq import jobs
from tests.rq.support import Producer, ha_queue, kill_master_under_load, run_cli, wait_until, worker_env, worker_process
from tests.support.cluster import LoopbackCluster

pytestmark = pytest.mark.integration

PRIORITY = ("high", "default", "low")
DRAIN_LIMIT_S = 40.0


def test_a_burst_worker_on_three_queues_takes_every_high_job_then_default_then_low(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record = tmp_path / "executions.txt"
    queues = {name: ha_queue(cluster, name) for name in PRIORITY}
    enqueued: dict[str, list[str]] = {name: [] for name in PRIORITY}
    for _ in range(4):
        for name in ("low", "default", "high"):  # the reverse of priority, interleaved
            enqueued[name].append(queues[name].enqueue(jobs.record_where, str(record)).id)

    result = run_cli(["worker", "--burst", *PRIORITY], worker_env(cluster), timeout_s=45)

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    ran = [(fields[0], fields[1]) for fields in jobs.records(str(record))]
    expected = [(job_id, name) for name in PRIORITY for job_id in enqueued[name]]
    assert ran == expected
    assert all(queue.count == 0 for queue in queues.values())


def test_a_high_job_enqueued_while_low_jobs_wait_runs_before_them(cluster: LoopbackCluster, tmp_path: Path) -> None:
    record = tmp_path / "executions.txt"
    low, high = ha_queue(cluster, "low"), ha_queue(cluster, "high")
    low_ids = [low.enqueue(jobs.record_where, str(record), 0.2).id for _ in range(10)]
    with worker_process(cluster, tmp_path / "worker.log", queues=PRIORITY) as worker:
        wait_until(lambda: len(jobs.records(str(record))) >= 1, 30, "the first low job to run")
        urgent = high.enqueue(jobs.record_where, str(record)).id
        wait_until(lambda: len(jobs.records(str(record))) == 11, 30, "every job to run")
        os.kill(worker.pid, signal.SIGTERM)
        code = worker.wait(timeout=30)
    order = [fields[0] for fields in jobs.records(str(record))]
    # The low job running (and at most the one already taken) finishes first; then the high one.
    assert order.index(urgent) <= 2, order
    assert [job_id for job_id in order if job_id != urgent] == low_ids
    assert code == 0


def test_a_multi_queue_worker_keeps_its_pid_through_a_master_kill_and_runs_every_acknowledged_job(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record = tmp_path / "executions.txt"
    log_path = tmp_path / "worker.log"
    queues = [ha_queue(cluster, name, durable="all") for name in PRIORITY]
    with worker_process(cluster, log_path, queues=PRIORITY) as worker:
        pid = worker.pid
        producer = Producer(queues, record, func=jobs.record_where)
        acknowledged = kill_master_under_load(cluster, producer, record, drain_limit_s=DRAIN_LIMIT_S)
        reader = queues[0].connection

        def all_finished() -> bool:
            fetched = Job.fetch_many(sorted(acknowledged), connection=reader)
            return all(job is not None and job.get_status(refresh=False) == JobStatus.FINISHED for job in fetched)

        wait_until(all_finished, DRAIN_LIMIT_S, "every acknowledged job to be recorded as finished", interval_s=0.5)
        assert worker.poll() is None, "the worker process exited"
        assert worker.pid == pid
    runs = jobs.executions(str(record))
    ran_in = {fields[0]: fields[1] for fields in jobs.records(str(record))}
    duplicates = sum(1 for job_id in acknowledged if runs[job_id] > 1)
    per_queue = {name: sum(1 for job_id in acknowledged if ran_in[job_id] == name) for name in PRIORITY}
    print(f"{len(acknowledged)} acknowledged {per_queue}, all ran and finished, {duplicates} ran twice, pid {pid} kept")
    assert producer.errors == []
    assert min(per_queue.values()) > 15
    log = log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
    # The kill hit the worker, and it followed the failover without leaving its loop.
    assert "Lost the master" in log and "Reconnected to the master" in log, log[-3000:]


def test_a_persistent_refusal_by_redis_is_named_and_repeated_until_it_clears(
    cluster: LoopbackCluster, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A user that may do everything a worker does except take a job off a queue.
    admin = cluster.redis_client(cluster.master_node())
    password = "nodequeue-password-123"
    admin.execute_command("ACL", "SETUSER", "nodequeue", "on", f">{password}", "~*", "&*", "+@all", "-blmove", "-lmove")
    monkeypatch.setattr(worker_module, "STILL_FAILING_LOG_INTERVAL_S", 0.5, raising=False)
    settings = redis_ha.load_settings(env=cluster.env() | {"REDIS_USERNAME": "nodequeue", "REDIS_PASSWORD": password})
    worker = make_worker(["default"], RQRedis(settings))
    stop = threading.Timer(5.0, lambda: setattr(worker, "_stop_requested", True))
    caplog.set_level(logging.WARNING, logger="redis_ha.rq.worker")
    stop.start()
    try:
        worker.work(with_scheduler=False)
    finally:
        stop.cancel()
    refusal = "no permissions to run the 'blmove' command"  # NOPERM, as redis-py's NoPermissionError says it
    said = [r.getMessage() for r in caplog.records if r.name == "redis_ha.rq.worker" and refusal in r.getMessage()]
    assert len(said) >= 2, [r.getMessage() for r in caplog.records]
    assert "lost Redis" not in said[0], "a refusal is not a lost connection"
