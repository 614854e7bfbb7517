"""The real ``redis-ha worker --processes N``: RQ's WorkerPool of HA workers, through a master kill."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import pytest
from rq import Worker
from rq.job import Job, JobStatus

from tests.rq import jobs
from tests.rq.support import (
    Producer,
    free_port,
    ha_queue,
    kill_master_under_load,
    run_cli,
    wait_until,
    worker_env,
    worker_process,
)
from tests.support import processes
from tests.support.cluster import LoopbackCluster, pids_alive

POOL_SIZE = 3
DRAIN_LIMIT_S = 40.0


def scraped(port: int, metric: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(metric + " "):
                return float(line.split()[1])
    raise AssertionError(f"{metric} is not in the scrape")


@pytest.mark.integration
def test_a_pool_of_three_rides_through_a_master_kill_with_ha_connections_and_stops_on_sigterm(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record = tmp_path / "executions.txt"
    last_record = tmp_path / "last.txt"
    log_path = tmp_path / "pool.log"
    queue = ha_queue(cluster, durable="all")
    port = free_port()
    cli_args = ("--processes", str(POOL_SIZE), "--metrics-port", str(port))
    with worker_process(cluster, log_path, cli_args=cli_args) as pool:
        wait_until(
            lambda: len(processes.children(pool.pid)) == POOL_SIZE and Worker.count(queue.connection) == POOL_SIZE,
            30,
            f"{POOL_SIZE} worker processes to start and register",
        )
        workers = processes.children(pool.pid)
        producer = Producer(queue, record, func=jobs.record_where, args=(0.1,))
        acknowledged = kill_master_under_load(cluster, producer, record, drain_limit_s=DRAIN_LIMIT_S)

        def all_finished() -> bool:
            fetched = Job.fetch_many(sorted(acknowledged), connection=queue.connection)
            return all(job is not None and job.get_status(refresh=False) == JobStatus.FINISHED for job in fetched)

        wait_until(all_finished, DRAIN_LIMIT_S, "every acknowledged job to be recorded as finished", interval_s=0.5)
        # Not one worker process died (the pool would have started a new one with another pid).
        assert processes.children(pool.pid) == workers
        wait_until(
            lambda: scraped(port, "redis_ha_rq_jobs_done_total") >= len(acknowledged),
            10,
            "the pool's metrics to count every job its workers ran",
        )
        assert scraped(port, "redis_ha_failovers_seen_total") >= 1
        log_before_stop = log_path.read_text()

        # SIGTERM while a job runs: the job finishes, every worker stops, the pool exits 0.
        last = queue.enqueue(jobs.sleep_then_record, str(last_record), 2.0)
        wait_until(lambda: last.get_status(refresh=True) == JobStatus.STARTED, 20, "the last job to start")
        os.kill(pool.pid, signal.SIGTERM)
        code = pool.wait(timeout=30)

    log = log_path.read_text()
    assert code == 0, log[-3000:]
    assert pids_alive(sorted(workers)) == []
    assert jobs.executions(str(last_record)) == {last.id: 1}
    assert last.get_status(refresh=True) == JobStatus.FINISHED
    assert Worker.count(queue.connection) == 0, "a worker did not record its stop"

    ran = jobs.records(str(record))
    runs = jobs.executions(str(record))
    duplicates = sum(1 for job_id in acknowledged if runs[job_id] > 1)
    horse_parents = {int(fields[4]) for fields in ran}
    print(
        f"pool of {POOL_SIZE}: {len(acknowledged)} acknowledged, all finished, {duplicates} ran twice, "
        f"jobs per worker {sorted(sum(1 for f in ran if int(f[4]) == pid) for pid in workers)}"
    )
    assert producer.errors == []
    assert len(acknowledged) >= 50
    # Every work-horse ran its job on a Sentinel-aware connection, and every worker ran jobs.
    assert {(fields[2], fields[3]) for fields in ran} == {("RQRedis", "HAConnectionPool")}
    assert horse_parents == workers
    assert queue.failed_job_registry.count == 0
    assert "Traceback" not in log, log[-3000:]
    assert "is dead" not in log_before_stop and "exit code" not in log_before_stop, log_before_stop[-3000:]
    # Each worker process lost the killed master and reconnected by itself.
    assert log_before_stop.count("Reconnected to the master") >= POOL_SIZE, log_before_stop[-3000:]


@pytest.mark.integration
def test_a_burst_pool_runs_every_queued_job_once_and_exits_zero(cluster: LoopbackCluster, tmp_path: Path) -> None:
    record = tmp_path / "executions.txt"
    queue = ha_queue(cluster)
    ids = {queue.enqueue(jobs.record_where, str(record), 0.1).id for _ in range(30)}

    result = run_cli(["worker", "--processes", str(POOL_SIZE), "--burst"], worker_env(cluster), timeout_s=45)

    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert jobs.executions(str(record)) == dict.fromkeys(ids, 1)
    assert len({fields[4] for fields in jobs.records(str(record))}) >= 2, "the jobs were not shared out"
    assert queue.count == 0


def test_bad_pool_options_are_reported_plainly_with_exit_code_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RQ_"))}
    env |= {"REDIS_SENTINELS": "127.0.0.1:1", "REDIS_MASTER_NAME": "mymaster"}
    zero = run_cli(["worker", "--processes", "0"], env, timeout_s=30)
    assert zero.returncode == 2
    assert "--processes: expected a whole number of at least 1, got 0" in zero.stderr
    named = run_cli(["worker", "--processes", "2", "--name", "w1"], env, timeout_s=30)
    assert named.returncode == 2
    assert "--name names one worker" in named.stderr
    assert "Traceback" not in zero.stderr + named.stderr


@pytest.mark.integration
def test_a_pool_whose_credentials_are_refused_exits_2_at_once(cluster: LoopbackCluster) -> None:
    env = worker_env(cluster, {"REDIS_PASSWORD": "wrong-password-123"})
    result = run_cli(["worker", "--processes", str(POOL_SIZE)], env, timeout_s=30)
    assert result.returncode == 2
    assert "Redis refused user 'app'" in result.stderr
    assert "Starting worker pool" not in result.stdout + result.stderr
