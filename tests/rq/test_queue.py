"""Idempotent enqueue: a retried enqueue is a no-op even after the job ran and its hash expired."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from redis_ha.rq.defaults import DEFAULT_ENQUEUE_DEDUP_TTL_S, RQSettings
from redis_ha.rq.enqueue import DEDUP_MARKER_PREFIX, REPLICA_COUNT_CACHE_S

from tests.rq import jobs
from tests.rq.support import ha_queue, run_cli, wait_until, worker_env
from tests.support.cluster import LoopbackCluster

NO_RETRY = RQSettings(retry_max=0)


@pytest.mark.integration
def test_a_retried_enqueue_after_the_job_ran_and_its_result_expired_does_not_run_it_again(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record = tmp_path / "executions.txt"
    env = worker_env(cluster)
    for dedup_ttl_s, runs_expected in ((DEFAULT_ENQUEUE_DEDUP_TTL_S, 1), (0, 2)):
        queue = ha_queue(cluster, rq_settings=RQSettings(retry_max=0, enqueue_dedup_ttl_s=dedup_ttl_s))
        job = queue.create_job(jobs.record, args=(str(record),), job_id=f"dedup-{dedup_ttl_s}", result_ttl=1)
        queue.enqueue_job(job)
        ran = run_cli(["worker", "--burst"], env, timeout_s=45)
        assert ran.returncode == 0, ran.stdout[-2000:]
        assert jobs.executions(str(record)).get(job.id) == 1
        wait_until(lambda: not queue.connection.exists(job.key), 10, "the job's hash to expire")  # noqa: B023

        queue.enqueue_job(job)  # the producer's retry, say from its outbox, after the result expired
        ran = run_cli(["worker", "--burst"], env, timeout_s=45)
        assert ran.returncode == 0, ran.stdout[-2000:]
        # With the marker the retry is a no-op; without it (RQ_ENQUEUE_DEDUP_TTL=0) the job runs again.
        assert jobs.executions(str(record)).get(job.id) == runs_expected
        marker_ttl = queue.connection.ttl(DEDUP_MARKER_PREFIX + job.id)
        if dedup_ttl_s:
            assert dedup_ttl_s - 60 < marker_ttl <= dedup_ttl_s
        else:
            assert marker_ttl == -2  # no marker written


@pytest.mark.integration
def test_an_enqueue_of_a_job_whose_hash_exists_but_has_no_marker_is_still_a_no_op(cluster: LoopbackCluster) -> None:
    """Jobs enqueued before the marker existed (or with it off) are still recognised by their hash."""
    without = ha_queue(cluster, rq_settings=RQSettings(retry_max=0, enqueue_dedup_ttl_s=0))
    job = without.enqueue(jobs.noop, job_id="legacy")
    with_marker = ha_queue(cluster, rq_settings=NO_RETRY)
    with_marker.enqueue_job(job)
    assert with_marker.connection.lrange(with_marker.key, 0, -1) == [b"legacy"]


def test_a_bad_enqueue_dedup_ttl_is_reported_plainly_with_exit_code_2() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RQ_"))}
    env |= {"REDIS_SENTINELS": "127.0.0.1:1", "REDIS_MASTER_NAME": "mymaster", "RQ_ENQUEUE_DEDUP_TTL": "24h"}
    result = run_cli(["worker"], env, timeout_s=30)
    assert result.returncode == 2
    assert "RQ_ENQUEUE_DEDUP_TTL is '24h'; expected a whole number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_durable_all_counts_the_replicas_streaming_from_the_master_when_sentinel_sees_none(
    cluster: LoopbackCluster,
) -> None:
    """A Sentinel cut off with the old master reports no healthy replica; here no Sentinel answers
    at all. The master the client writes to still streams to 2 replicas, and both must confirm."""
    queue = ha_queue(cluster, durable="all", rq_settings=NO_RETRY)
    queue.enqueue(jobs.noop, job_id="before")
    for index in range(3):
        cluster.kill_sentinel(index)
    time.sleep(REPLICA_COUNT_CACHE_S)  # the count is asked again, with every Sentinel gone
    assert queue.enqueuer.healthy_replicas() == 2
    job = queue.enqueue(jobs.noop, job_id="after")
    assert queue.connection.exists(job.key)


@pytest.mark.integration
def test_latest_result_waits_its_whole_timeout_on_a_healthy_master(cluster: LoopbackCluster) -> None:
    queue = ha_queue(cluster, rq_settings=NO_RETRY)
    job = queue.enqueue(jobs.noop)  # no worker runs: no result comes
    started = time.monotonic()
    assert job.latest_result(timeout=6) is None
    assert 5.5 < time.monotonic() - started < 11.0
