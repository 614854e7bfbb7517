"""RQ producers and the real ``redis-ha worker`` CLI against a loopback cluster being failed over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_ha
from redis_ha.outbox import Outbox, OutboxEntry
from redis_ha.rq import Queue, rq_connection
from redis_ha.rq.connection import RQRedis
from redis_ha.rq.enqueue import Enqueuer
from redis_ha.rq.flusher import OUTBOX_BATCH, OutboxFlusher
from rq.job import Job, JobStatus
from rq.queue import Queue as StockQueue

from tests.rq import jobs
from tests.rq.support import (
    FAST_RETRY,
    PRODUCE_LIMIT_S,
    REPO_ROOT,
    Producer,
    free_port,
    ha_queue,
    run_cli,
    wait_until,
    worker_env,
    worker_process,
)
from tests.support.cluster import LoopbackCluster
from tests.support.write_loss import planned_failover

pytestmark = pytest.mark.integration

DRAIN_LIMIT_S = 60.0


@pytest.mark.parametrize("failover", ["kill -9 of the master", "SENTINEL FAILOVER", "the kit's planned failover"])
def test_jobs_enqueued_during_a_failover_all_finish_and_the_worker_survives(
    cluster: LoopbackCluster, tmp_path: Path, failover: str
) -> None:
    record = tmp_path / "executions.txt"
    with worker_process(cluster, tmp_path / "worker.log") as worker:
        # durable="all": the one setting that cannot lose an acknowledged job in a planned failover.
        producer = Producer(ha_queue(cluster, durable="all"), record)
        producer.start()
        # Counted, not timed: a loaded machine enqueues slower, and the failover must hit a busy producer.
        wait_until(lambda: len(producer.acknowledged) >= 25, 30.0, "25 jobs acknowledged before the failover")
        old = cluster.master_addr()
        if failover == "SENTINEL FAILOVER":
            cluster.sentinel_failover()
        elif failover == "the kit's planned failover":
            planned_failover(cluster)
        else:
            cluster.kill_master()
        cluster.wait_for_master_change(old)
        switched_at = len(producer.acknowledged)
        wait_until(
            lambda: len(producer.acknowledged) >= switched_at + 25, 30.0, "25 jobs acknowledged after the failover"
        )
        producer.stop_event.set()
        producer.join(PRODUCE_LIMIT_S)
        acknowledged = set(producer.acknowledged)
        wait_until(
            lambda: acknowledged <= set(jobs.executions(str(record))),
            DRAIN_LIMIT_S,
            "every acknowledged job to run",
            interval_s=0.5,
        )
        assert worker.poll() is None, "the worker process exited"
        pid = worker.pid
    runs = jobs.executions(str(record))
    duplicates = sum(1 for job_id in acknowledged if runs[job_id] > 1)
    print(f"{failover}: {len(acknowledged)} acknowledged, all ran, {duplicates} ran twice, worker pid {pid} kept")
    assert producer.errors == []
    assert len(acknowledged) >= 50
    if failover == "the kit's planned failover":
        # Writes were paused, not cut: no job's completion is lost, so none runs again.
        assert duplicates == 0
    log = (tmp_path / "worker.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def test_a_retried_enqueue_whose_reply_was_lost_does_not_queue_the_job_twice(cluster: LoopbackCluster) -> None:
    """The master is frozen longer than the socket timeout but shorter than Sentinel's down-after:
    the first EVALSHA runs when it thaws, its reply is lost, and the retry finds the job there."""
    queue = Queue(
        "default",
        connection=RQRedis(redis_ha.load_settings(env=cluster.env(), socket_timeout_s=0.3)),
        rq_settings=FAST_RETRY,
    )
    queue.connection.ping()
    master = cluster.master_node()
    cluster.freeze(master)
    timer = threading.Timer(0.9, cluster.thaw, args=(master,))
    timer.start()
    try:
        job = queue.enqueue(jobs.noop)
    finally:
        timer.join()
        cluster.thaw(master)
    assert queue.connection.lrange(queue.key, 0, -1) == [job.id.encode()]

    # Stock RQ's enqueue pipeline (HSET, RPUSH, ...) in the same spot: nobody can know whether
    # its RPUSH ran, so redis_ha refuses to repeat it.
    class FreezingStockQueue(StockQueue):
        def _persist_job(self, *args: Any, **kwargs: Any) -> Any:
            cluster.freeze(master)  # the pipeline is being filled: nothing is sent until execute()
            return super()._persist_job(*args, **kwargs)

    stock = FreezingStockQueue("stock", connection=queue.connection)
    timer = threading.Timer(0.9, cluster.thaw, args=(master,))
    timer.start()
    try:
        with pytest.raises(redis_ha.CommandOutcomeUnknown):
            stock.enqueue(jobs.noop)
    finally:
        timer.join()
        cluster.thaw(master)


def test_sigterm_during_a_job_lets_it_finish_then_the_worker_exits_zero(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record = tmp_path / "executions.txt"
    queue = ha_queue(cluster)
    port = free_port()
    with worker_process(cluster, tmp_path / "worker.log", cli_args=("--metrics-port", str(port))) as worker:
        job = queue.enqueue(jobs.sleep_then_record, str(record), 2.0)
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 20, "the job to start")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'redis_ha_rq_queue_depth{queue="default"} 0.0' in metrics
        assert "redis_ha_failovers_seen_total 0.0" in metrics
        assert "redis_ha_rq_outbox_size 0.0" in metrics  # no outbox configured: 0, not missing
        os.kill(worker.pid, signal.SIGTERM)
        code = worker.wait(timeout=30)
    assert code == 0, (tmp_path / "worker.log").read_text()[-3000:]
    assert jobs.executions(str(record)) == {job.id: 1}
    assert job.get_status(refresh=True) == JobStatus.FINISHED


PRODUCER_SCRIPT = """
import sys
from redis_ha.rq import Queue
from tests.rq import jobs
queue = Queue("default")
ids = [queue.enqueue(jobs.record, sys.argv[1]).id for _ in range(int(sys.argv[2]))]
print(" ".join(ids))
"""


def test_jobs_enqueued_while_redis_is_unreachable_wait_on_disk_and_go_out_once(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record = tmp_path / "executions.txt"
    outbox = tmp_path / "outbox.db"
    env = worker_env(cluster, {"RQ_OUTBOX_PATH": str(outbox), "REDIS_RETRY_DEADLINE": "1"})
    cluster.stop_all_sentinels()
    # A producer process enqueues while no sentinel answers, then exits: the jobs wait on disk.
    produced = subprocess.run(
        [sys.executable, "-c", PRODUCER_SCRIPT, str(record), "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO_ROOT,
    )
    ids = produced.stdout.split()
    assert len(ids) == 20
    assert "storing jobs in outbox" in produced.stderr
    for i in range(len(cluster.sentinels)):
        cluster.start_sentinel(i)
    cluster.wait_healthy(30)
    # A new producer process (a restart) finds the outbox and flushes it, oldest first.
    queue = Queue(
        "default", connection=RQRedis(redis_ha.load_settings(env=cluster.env())), outbox=outbox, rq_settings=FAST_RETRY
    )
    assert queue.outbox is not None
    wait_until(lambda: len(queue.outbox) == 0, 30, "the outbox to drain")  # type: ignore[arg-type]
    queued = [j.decode() if isinstance(j, bytes) else j for j in queue.connection.lrange(queue.key, 0, -1)]
    assert queued == ids
    with worker_process(cluster, tmp_path / "worker.log"):
        wait_until(lambda: len(jobs.executions(str(record))) == 20, 30, "every outboxed job to run", 0.3)
    assert set(jobs.executions(str(record)).values()) == {1}


def test_a_job_already_in_redis_is_not_sent_again_from_the_outbox(cluster: LoopbackCluster, tmp_path: Path) -> None:
    queue = Queue(
        "default",
        connection=RQRedis(redis_ha.load_settings(env=cluster.env())),
        outbox=tmp_path / "outbox.db",
        rq_settings=FAST_RETRY,
    )
    job = queue.enqueue(jobs.noop)
    assert queue.outbox is not None
    from redis_ha.outbox import OutboxEntry  # noqa: PLC0415

    queue.outbox.add(OutboxEntry(job_id=job.id, queue="default", mapping=job.to_dict()))
    queue.flush_outbox()
    assert queue.connection.lrange(queue.key, 0, -1) == [job.id.encode()]


def test_a_job_orphaned_by_a_lost_completion_is_finished_within_30_seconds(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    """While the job runs, its Redis records are copied; once it finished they are put back, as
    a failover to a replica that missed the completion would leave them."""
    record = tmp_path / "executions.txt"
    queue = ha_queue(cluster)
    admin = cluster.redis_client(cluster.master_addr())
    with worker_process(cluster, tmp_path / "worker.log") as worker:
        job = queue.enqueue(jobs.sleep_then_record, str(record), 1.5)
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.STARTED, 20, "the job to start")
        time.sleep(0.3)
        keys = [job.key, queue.started_job_registry.key]
        keys += [k for k in admin.keys("rq:execution*") if job.id in k]
        keys += admin.keys("rq:worker:*:executions")
        snapshot = {key: admin.dump(key) for key in keys}
        wait_until(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, 20, "the job to finish")
        for key, value in snapshot.items():
            if value is not None:
                admin.restore(key, 0, value, replace=True)
        assert Job.fetch(job.id, connection=queue.connection).get_status() == JobStatus.STARTED
        took = wait_until(
            lambda: (
                job.get_status(refresh=True) == JobStatus.FINISHED
                and len(jobs.executions(str(record))) == 1
                and jobs.executions(str(record))[job.id] == 2
            ),
            30,
            "the orphaned job to run again and finish",
            interval_s=0.2,
        )
        assert worker.poll() is None
    print(f"orphaned job finished again {took:.1f}s after its completion was lost (it ran twice by design)")
    assert "Orphaned job found" in (tmp_path / "worker.log").read_text()


def test_bad_configuration_is_reported_plainly_with_exit_code_2(cluster: LoopbackCluster) -> None:
    env = worker_env(cluster, {"REDIS_SENTINELS": "127.0.0.1:notaport", "RQ_RETRY_MAX": "many"})
    result = run_cli(["worker", "default"], env, timeout_s=30)
    assert result.returncode == 2
    assert "REDIS_SENTINELS" in result.stderr and "RQ_RETRY_MAX" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_reports_healthy_then_degraded_and_ping_loop_summarizes(cluster: LoopbackCluster) -> None:
    env = worker_env(cluster)
    healthy = run_cli(["status", "--json"], env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert '"state": "healthy"' in healthy.stdout
    cluster.kill_sentinel(2)
    degraded = run_cli(["status"], env)
    assert degraded.returncode == 1
    assert degraded.stdout.startswith("DEGRADED: 1 of 3 sentinels do not answer")
    pings = run_cli(["ping-loop", "--interval", "0.1", "--duration", "1"], env)
    assert pings.returncode == 0
    assert "Summary:" in pings.stdout and "0 failed" in pings.stdout


def test_rq_clones_of_the_connection_stay_sentinel_aware() -> None:
    """RQ's scheduler and WorkerPool rebuild the connection from its pool's kwargs."""
    from redis.connection import ConnectionPool  # noqa: PLC0415
    from rq.connections import parse_connection  # noqa: PLC0415

    original = rq_connection(sentinels="127.0.0.1:1", retry_deadline_s=0.1)
    conn_class, pool_class, pool_kwargs = parse_connection(original)
    clone = conn_class(connection_pool=ConnectionPool(connection_class=pool_class, **pool_kwargs))
    assert isinstance(clone, RQRedis)
    assert clone.ha_pool is not original.ha_pool
    assert clone.settings == original.settings
    with pytest.raises(redis.ConnectionError):
        clone.ping()


def left_in_outbox(cluster: LoopbackCluster, outbox: Path, record: Path, count: int) -> list[str]:
    """Jobs a producer process stored in ``outbox`` because it could not reach Redis; it has exited since."""
    unreachable = {"REDIS_SENTINELS": f"127.0.0.1:{free_port()}", "REDIS_RETRY_DEADLINE": "1"}
    env = worker_env(cluster, {"RQ_OUTBOX_PATH": str(outbox), **unreachable})
    produced = subprocess.run(
        [sys.executable, "-c", PRODUCER_SCRIPT, str(record), str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO_ROOT,
    )
    ids = produced.stdout.split()
    assert len(ids) == count, produced.stderr[-2000:]
    return ids


def test_a_running_producer_sends_the_jobs_another_process_left_in_the_outbox(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record, outbox = tmp_path / "executions.txt", tmp_path / "outbox" / "jobs.db"
    queue = Queue(
        "default", connection=RQRedis(redis_ha.load_settings(env=cluster.env())), outbox=outbox, rq_settings=FAST_RETRY
    )
    queue.enqueue(jobs.noop)  # a long-lived producer, enqueueing straight into Redis
    left = left_in_outbox(cluster, outbox, record, 5)
    queue.enqueue(jobs.noop)
    wait_until(
        lambda: all(queue.connection.exists(Job.key_for(job_id)) for job_id in left),
        20,
        "the jobs the other process left to reach Redis",
    )
    assert queue.outbox is not None and len(queue.outbox) == 0


def test_a_worker_sends_the_jobs_producers_left_in_the_outbox_and_runs_each_once(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    record, outbox = tmp_path / "executions.txt", tmp_path / "outbox" / "jobs.db"
    left = left_in_outbox(cluster, outbox, record, 5)
    with worker_process(cluster, tmp_path / "worker.log", RQ_OUTBOX_PATH=str(outbox)):
        wait_until(lambda: set(jobs.executions(str(record))) == set(left), 30, "the outboxed jobs to run", 0.3)
    assert set(jobs.executions(str(record)).values()) == {1}


class CountingEnqueuer(Enqueuer):
    """Counts the jobs it sends to Redis."""

    def __init__(self, connection: RQRedis) -> None:
        super().__init__(connection)
        self.sent = 0

    def send(self, entries: Any, replicas: int = 0, timeout_ms: int = 1000) -> list[int]:
        self.sent += len(entries)
        return super().send(entries, replicas, timeout_ms)


def test_several_processes_draining_one_outbox_send_each_job_once(cluster: LoopbackCluster, tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    count = 3 * OUTBOX_BATCH
    box = Outbox(path)
    for i in range(count):
        box.add(OutboxEntry(job_id=f"drained-{i}", queue="drained", mapping={"status": "queued", "origin": "drained"}))
    settings = redis_ha.load_settings(env=cluster.env())
    # One flusher per process normally; each has a handle of its own on the file, as processes do.
    enqueuers = [CountingEnqueuer(RQRedis(settings)) for _ in range(3)]
    flushers = [OutboxFlusher(Outbox(path), enqueuer, 0, 1000) for enqueuer in enqueuers]
    start = threading.Barrier(len(flushers))

    def drain(flusher: OutboxFlusher) -> None:
        start.wait(10)
        flusher.flush()

    threads = [threading.Thread(target=drain, args=(f,)) for f in flushers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    wait_until(lambda: len(box) == 0, 20, "the outbox to drain")
    for flusher in flushers:
        flusher.close()
    assert sum(enqueuer.sent for enqueuer in enqueuers) == count
    assert enqueuers[0].connection.llen("rq:queue:drained") == count
