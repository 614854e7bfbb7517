"""Idempotent enqueue: a retried enqueue is a no-op even after the job ran and its hash expired."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
import redis_ha
from redis_ha.errors import NotDurable
from redis_ha.rq import Queue
from redis_ha.rq.connection import RQRedis
from redis_ha.rq.defaults import DEFAULT_ENQUEUE_DEDUP_TTL_S, RQSettings
from redis_ha.rq.enqueue import DEDUP_MARKER_PREFIX, REPLICA_COUNT_CACHE_S

from tests.rq import jobs
from tests.rq.support import ha_queue, run_cli, wait_until, worker_env
from tests.support.cluster import LoopbackCluster, parse_pairs

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


def _sentinels_see_priority(cluster: LoopbackCluster, replica: tuple[str, int], priority: int) -> bool:
    for index in range(cluster.num_sentinels):
        with cluster.sentinel_client(index, decode_responses=True) as sentinel:
            listed = sentinel.execute_command("SENTINEL REPLICAS", cluster.master_name)
        seen = {(r["ip"], int(r["port"])): int(r["slave-priority"]) for r in map(parse_pairs, listed)}
        if seen.get(replica) != priority:
            return False
    return True


@pytest.mark.integration
def test_durable_all_acknowledges_no_job_on_a_master_sentinel_has_already_replaced(cluster: LoopbackCluster) -> None:
    """Between a replica's promotion and the other replica's move to it, Sentinel already names the
    new master (its replicas: the other one, still streaming from the old master, and the old
    master, not linked) while the old master still streams to that other replica. A client that
    has not heard of the switch yet and writes to the old master must not count one replica as
    "all": the one that confirms is resynced from the new master and the job is gone.

    The window is held open: the Sentinels' user may not run REPLICAOF on the old master and the
    replica that stays (and that replica has priority 0, so the other one is promoted), and this
    client does not watch for +switch-master."""
    settings = redis_ha.load_settings(env={**cluster.env(), "REDIS_RETRY_DEADLINE": "4"})
    connection = RQRedis(settings)
    connection.ha_pool.topology.disable_watcher()
    queue = Queue("default", connection=connection, durable="all", rq_settings=NO_RETRY)
    queue.enqueue(jobs.noop, job_id="before")
    old = cluster.master_node()
    stays = cluster.replica_nodes()[1]  # the other replica is promoted
    deny, allow = ("-replicaof", "-slaveof"), ("+replicaof", "+slaveof")
    with cluster.redis_client(stays) as admin:
        priority = int(admin.config_get("replica-priority")["replica-priority"])
        admin.config_set("replica-priority", 0)
    try:
        wait_until(lambda: _sentinels_see_priority(cluster, stays.addr, 0), 15, "every Sentinel to see priority 0")
        for node in (old, stays):
            with cluster.redis_client(node) as admin:
                admin.execute_command("ACL SETUSER", cluster.sentinel_user, *deny)
        cluster.sentinel_failover(cluster.num_sentinels - 1)  # a leader that is not the first one asked
        cluster.wait_for_master_change(old.addr)
        acknowledged = []
        with contextlib.suppress(NotDurable):  # the right answer here; an acknowledgement must hold
            acknowledged.append(queue.enqueue(jobs.noop, job_id="during").id)
        # The window was open: the old master still streamed to the replica that stays.
        with cluster.redis_client(old, decode_responses=True) as admin:
            info = admin.info("replication")
        assert info["role"] == "master" and info["slave0"]["port"] == stays.addr[1], info
    finally:
        for node in (old, stays):
            with cluster.redis_client(node, decode_responses=True) as admin:
                admin.execute_command("ACL SETUSER", cluster.sentinel_user, *allow)
                assert admin.execute_command("ACL DRYRUN", cluster.sentinel_user, "REPLICAOF", "NO", "ONE") == "OK"
        with cluster.redis_client(stays) as admin:
            admin.config_set("replica-priority", priority)
    cluster.wait_healthy(40)
    with cluster.redis_client(cluster.master_node()) as final:
        lost = [job_id for job_id in ["before", *acknowledged] if not final.exists(f"rq:job:{job_id}")]
    assert lost == [], f"acknowledged durable jobs lost after the second replica resynced: {lost}"
