"""RQ benchmark on a loopback cluster: ``redis-ha worker`` and ``redis_ha.rq.Queue`` next to stock RQ.

Prints (never asserts):
  1. jobs/s of ``redis-ha worker --burst`` vs stock ``rq worker --burst`` draining the same no-op
     jobs (alternating rounds; target ratio >= 0.95);
  2. enqueues/s of ``redis_ha.rq.Queue.enqueue`` vs stock ``Queue.enqueue`` straight to the master
     (target >= 0.95), and the cost of durable mode (WAIT for every replica);
  3. over N kill -9 failovers under load (durable producer, one ``redis-ha worker``): worker
     survived, acknowledged jobs lost, jobs run twice, orphans recovered, and how long after the
     kill the last job acknowledged before it had run; then one kill -9 under a stock
     ``rq worker`` configured for Sentinel, to show whether it survives.

Usage: python tests/bench/bench_rq.py [--failovers 10] [--jobs 1000]
Every loop is bounded; every process is stopped by its pid; the cluster is torn down at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from rq import Queue as StockQueue

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis_ha
from redis_ha.rq import Queue
from redis_ha.rq.connection import RQRedis
from redis_ha.rq.defaults import RQSettings

from tests.rq import jobs
from tests.rq.support import REPO_ROOT, worker_env
from tests.support import processes
from tests.support.cluster import LoopbackCluster

RQ_BIN = str(Path(sys.executable).with_name("rq"))
DRAIN_LIMIT_S = 120.0
PRODUCE_INTERVAL_S = 0.05
"""Under the failover load, one job every 50 ms: below one worker's throughput, so any delay
measured after a kill is the failover and the orphan recovery, not a backlog."""
SETTINGS = RQSettings(retry_max=3, retry_intervals_s=(1,))


WORKER_ROUNDS = 8


def plain_master(cluster: LoopbackCluster) -> redis.Redis:
    host, port = cluster.master_addr()
    return redis.Redis(host=host, port=port, username=cluster.app_user, password=cluster.app_password)


def ha_conn(cluster: LoopbackCluster) -> RQRedis:
    return RQRedis(redis_ha.load_settings(env=cluster.env()))


def drain_rate(cluster: LoopbackCluster, kind: str, count: int, tmp: Path) -> float:
    """Enqueue ``count`` no-op jobs, then time one burst worker draining them (jobs/s)."""
    conn = plain_master(cluster)
    queue = StockQueue("bench", connection=conn)
    queue.enqueue_many([StockQueue.prepare_data(jobs.noop) for _ in range(count)])
    env = worker_env(cluster)
    if kind == "ha":
        argv = [sys.executable, "-m", "redis_ha.cli", "worker", "--burst", "bench"]
    else:
        host, port = cluster.master_addr()
        url = f"redis://{cluster.app_user}:{cluster.app_password}@{host}:{port}/0"
        argv = [RQ_BIN, "worker", "--burst", "-u", url, "bench"]
    started = time.monotonic()
    with (tmp / f"drain-{kind}.log").open("ab") as log:
        subprocess.run(argv, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=DRAIN_LIMIT_S, check=True)
    took = time.monotonic() - started
    left = queue.count
    conn.delete(queue.key, f"rq:finished:{queue.name}")
    return (count - left) / took


def enqueue_rate(queue: StockQueue, seconds: float) -> float:
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        queue.enqueue(jobs.noop)
        count += 1
    queue.connection.delete(queue.key)
    return count / seconds


@contextlib.contextmanager
def background(argv: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    try:
        yield process
    finally:
        processes.stop(process, timeout_s=20)


class Producer(threading.Thread):
    def __init__(self, queue: Queue, record: Path, limit_s: float) -> None:
        super().__init__(daemon=True)
        self.queue = queue
        self.record = str(record)
        self.limit_s = limit_s
        self.acked: list[tuple[float, str]] = []
        self.errors = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.limit_s
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                job = self.queue.enqueue(jobs.record, self.record)
                self.acked.append((time.monotonic(), job.id))
            except redis.RedisError:
                self.errors += 1
            time.sleep(PRODUCE_INTERVAL_S)


def failovers_under_load(cluster: LoopbackCluster, rounds: int, tmp: Path) -> None:
    record = tmp / "executions.txt"
    log_path = tmp / "ha-worker.log"
    argv = [sys.executable, "-m", "redis_ha.cli", "worker", "default"]
    survived = 0
    catch_up: list[float] = []
    with background(argv, worker_env(cluster), log_path) as worker:
        pid = worker.pid
        producer = Producer(
            Queue("default", connection=ha_conn(cluster), durable="all", rq_settings=SETTINGS), record, 600
        )
        producer.start()
        for _ in range(rounds):
            time.sleep(1.0)
            killed_at = time.monotonic()
            old = cluster.kill_master()
            cluster.wait_for_master_change(old)
            before = {job_id for t, job_id in list(producer.acked) if t < killed_at}
            deadline = time.monotonic() + 60
            while not before <= set(jobs.executions(str(record))) and time.monotonic() < deadline:
                time.sleep(0.1)
            catch_up.append(time.monotonic() - killed_at)
            cluster.start_node(cluster.node_for(old))
            cluster.wait_healthy(30)
            survived += worker.poll() is None and worker.pid == pid
        producer.stop_event.set()
        producer.join(30)
        acked = {job_id for _t, job_id in producer.acked}
        deadline = time.monotonic() + DRAIN_LIMIT_S
        while not acked <= set(jobs.executions(str(record))) and time.monotonic() < deadline:
            time.sleep(0.5)
    runs = jobs.executions(str(record))
    lost = len(acked - set(runs))
    twice = sum(1 for job_id in acked if runs.get(job_id, 0) > 1)
    orphans = log_path.read_text().count("Orphaned job found") + log_path.read_text().count("Stuck job put back")
    if not catch_up:
        return
    print(f"\n{rounds} kill -9 failovers under load (durable producer every 50 ms, one redis-ha worker):")
    print(f"  worker survived            {survived}/{rounds} (same pid {pid} throughout)")
    print(f"  jobs acknowledged          {len(acked)} (producer errors surfaced: {producer.errors})")
    print(f"  acknowledged jobs lost     {lost}")
    print(f"  jobs run twice             {twice}")
    print(f"  orphans found and requeued {orphans}")
    print(
        f"  kill -> last earlier job run  p50 {statistics.median(catch_up):.1f}s  max {max(catch_up):.1f}s"
        "  (failover + requeue of orphaned jobs)"
    )


STOCK_SETTINGS = """
SENTINEL = {{
    "INSTANCES": {instances!r},
    "MASTER_NAME": {name!r},
    "USERNAME": {user!r},
    "PASSWORD": {password!r},
    "SENTINEL_KWARGS": {{"password": {sentinel_password!r}}},
}}
"""


def stock_worker_under_one_failover(cluster: LoopbackCluster, tmp: Path) -> None:
    (tmp / "stock_settings.py").write_text(
        STOCK_SETTINGS.format(
            instances=cluster.sentinel_addrs,
            name=cluster.master_name,
            user=cluster.app_user,
            password=cluster.app_password,
            sentinel_password=cluster.sentinel_password,
        )
    )
    env = worker_env(cluster)
    env["PYTHONPATH"] = f"{tmp}{os.pathsep}{env['PYTHONPATH']}"
    log_path = tmp / "stock-worker.log"
    producer = Producer(Queue("default", connection=ha_conn(cluster), rq_settings=SETTINGS), tmp / "stock.txt", 60)
    with background([RQ_BIN, "worker", "-c", "stock_settings", "default"], env, log_path) as worker:
        producer.start()  # the same load as above: the kill lands while jobs run, not only in BLPOP
        time.sleep(2.0)
        alive_before = worker.poll() is None
        old = cluster.kill_master()
        cluster.wait_for_master_change(old)
        time.sleep(10.0)
        alive = worker.poll() is None
        code = worker.returncode
        producer.stop_event.set()
        producer.join(30)
    cluster.start_node(cluster.node_for(old))
    cluster.wait_healthy(30)
    tail = [line for line in log_path.read_text().splitlines() if "quitting" in line or "Error" in line][-1:]
    print("\nStock `rq worker` configured for Sentinel (rq settings SENTINEL), one kill -9 under the same load:")
    print(
        f"  survived {int(alive_before and alive)}/1"
        + ("" if alive else f" (exited with code {code})")
        + (f": {tail[0].strip()[:150]}" if tail else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--enqueue-seconds", type=float, default=2.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the figures, not the clients' reconnect lines
    tmp = Path(tempfile.mkdtemp(prefix="bench-rq-"))
    try:
        with LoopbackCluster() as cluster:
            print(f"Loopback cluster: 1 master, {cluster.num_replicas} replicas, {cluster.num_sentinels} sentinels")
            # A job costs a fork here, so machine load swings each round: many short alternating
            # rounds, and the median of the per-round ratios, keep that noise off the comparison.
            ha_rates, stock_rates = [], []
            per_round = max(20, args.jobs // WORKER_ROUNDS)
            for _ in range(WORKER_ROUNDS):
                stock_rates.append(drain_rate(cluster, "stock", per_round, tmp))
                ha_rates.append(drain_rate(cluster, "ha", per_round, tmp))
            ratio = statistics.median(h / s for h, s in zip(ha_rates, stock_rates, strict=True))
            print(
                f"\nWorker throughput, {per_round * WORKER_ROUNDS} no-op jobs each, one burst worker, "
                f"{WORKER_ROUNDS} alternating rounds (medians):"
            )
            print(f"  redis-ha worker   {statistics.median(ha_rates):8.1f} jobs/s")
            print(f"  stock rq worker   {statistics.median(stock_rates):8.1f} jobs/s (URL straight to the master)")
            print(f"  ratio             {ratio:8.3f}   (median of per-round ratios; target >= 0.95)")

            plain = StockQueue("bench-enq", connection=plain_master(cluster))
            ha_queue = Queue("bench-enq", connection=ha_conn(cluster), rq_settings=SETTINGS)
            durable_queue = Queue("bench-enq", connection=ha_conn(cluster), rq_settings=SETTINGS, durable="all")
            rounds: dict[str, list[float]] = {"stock": [], "ha": [], "durable": []}
            for _ in range(3):
                rounds["stock"].append(enqueue_rate(plain, args.enqueue_seconds / 3))
                rounds["ha"].append(enqueue_rate(ha_queue, args.enqueue_seconds / 3))
                rounds["durable"].append(enqueue_rate(durable_queue, args.enqueue_seconds / 3))
            med = {k: statistics.median(v) for k, v in rounds.items()}
            print("\nEnqueue, one producer, 3 alternating rounds (medians):")
            print(f"  redis_ha.rq.Queue.enqueue        {med['ha']:8.0f} /s")
            print(f"  stock Queue.enqueue              {med['stock']:8.0f} /s (straight to the master)")
            print(f"  ratio                            {med['ha'] / med['stock']:8.3f}   (target >= 0.95)")
            print(
                f"  durable (WAIT all replicas)      {med['durable']:8.0f} /s "
                f"({med['durable'] / med['ha']:.2f}x of non-durable)"
            )

            failovers_under_load(cluster, args.failovers, tmp)
            stock_worker_under_one_failover(cluster, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
