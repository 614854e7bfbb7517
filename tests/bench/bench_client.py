"""Client benchmark on a loopback cluster: redis_ha next to stock redis-py, measured in one run.

Prints:
  1. steady-state SET/s through redis_ha vs plain redis-py straight to the master (ratio);
  2. over N kill -9 failovers: errors surfaced to a writer looping every 5 ms and its longest
     write gap (p50, max), for redis_ha and for stock ``Sentinel.master_for()`` side by side;
  3. the same over N ``SENTINEL FAILOVER``s.

Usage: python tests/bench/bench_client.py [--failovers 10] [--steady-seconds 3]
Every loop is bounded; the cluster is torn down at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.sentinel import Sentinel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis_ha

from tests.support.cluster import LoopbackCluster

WRITE_INTERVAL_S = 0.005
MAX_EPISODE_S = 30.0


@dataclass
class Episode:
    errors: int = 0
    longest_gap_s: float = 0.0
    writes: int = 0
    error_kinds: set[str] = field(default_factory=set)


class GapWriter(threading.Thread):
    """SET in a loop every 5 ms; record surfaced errors and the longest gap between successes."""

    def __init__(self, write: Callable[[int], Any]) -> None:
        super().__init__(daemon=True)
        self.write = write
        self.stop_event = threading.Event()
        self.episode = Episode()

    def run(self) -> None:
        deadline = time.monotonic() + MAX_EPISODE_S
        last_ok = time.monotonic()
        n = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                self.write(n)
                now = time.monotonic()
                self.episode.longest_gap_s = max(self.episode.longest_gap_s, now - last_ok)
                self.episode.writes += 1
                last_ok = now
            except redis.RedisError as error:
                self.episode.errors += 1
                self.episode.error_kinds.add(type(error).__name__)
            n += 1
            time.sleep(WRITE_INTERVAL_S)


def steady_state(cluster: LoopbackCluster, seconds: float) -> tuple[float, float, float, float, float]:
    """SET/s and client CPU per command, in many short alternating rounds so noise hits both alike.

    Returns (redis_ha rate, plain rate, median of per-round ratios, redis_ha CPU us/cmd, plain CPU us/cmd).
    """
    ha = redis_ha.connect(env=cluster.env())
    host, port = cluster.master_addr()
    plain = redis.Redis(host=host, port=port, username=cluster.app_user, password=cluster.app_password)
    ha.ping()
    plain.ping()
    rounds = 40
    slice_s = seconds / rounds

    def measure(client: redis.Redis) -> tuple[float, float]:
        count = 0
        cpu = time.process_time()
        start = time.monotonic()
        end = start + slice_s
        while time.monotonic() < end:
            client.set("bench:steady", count)
            count += 1
        elapsed = time.monotonic() - start
        return count / elapsed, (time.process_time() - cpu) / count * 1e6

    ha_runs, plain_runs = [], []
    for _ in range(rounds):
        plain_runs.append(measure(plain))
        ha_runs.append(measure(ha))
    ha.close()
    plain.close()
    ratios = [h[0] / p[0] for h, p in zip(ha_runs, plain_runs, strict=True)]
    return (
        statistics.median(r[0] for r in ha_runs),
        statistics.median(r[0] for r in plain_runs),
        statistics.median(ratios),
        statistics.median(r[1] for r in ha_runs),
        statistics.median(r[1] for r in plain_runs),
    )


def failover_round(cluster: LoopbackCluster, kind: str, ha: redis.Redis, stock: redis.Redis) -> tuple[Episode, Episode]:
    ha_writer = GapWriter(lambda n: ha.set(f"bench:ha:{n % 1000}", n))
    stock_writer = GapWriter(lambda n: stock.set(f"bench:stock:{n % 1000}", n))
    ha_writer.start()
    stock_writer.start()
    time.sleep(0.5)
    old = cluster.master_addr()
    if kind == "kill":
        old_node = cluster.kill_master()
        cluster.wait_for_master_change(old_node)
    else:
        cluster.sentinel_failover()
        cluster.wait_for_master_change(old)
    time.sleep(1.5)  # let both writers settle on the new master
    for writer in (ha_writer, stock_writer):
        writer.stop_event.set()
        writer.join(MAX_EPISODE_S)
    if kind == "kill":
        cluster.start_node(cluster.node_for(old))
    cluster.wait_healthy(30)
    return ha_writer.episode, stock_writer.episode


def summarize(name: str, episodes: list[Episode]) -> str:
    gaps = [e.longest_gap_s for e in episodes]
    errors = sum(e.errors for e in episodes)
    kinds = sorted(set().union(*(e.error_kinds for e in episodes)))
    return (
        f"  {name:<28} errors surfaced {errors:>5}   longest gap p50 {statistics.median(gaps):5.2f}s "
        f"max {max(gaps):5.2f}s" + (f"   ({', '.join(kinds)})" if kinds else "")
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    args = parser.parse_args()

    with LoopbackCluster() as cluster:
        down_after_s = cluster.down_after_ms / 1000
        print(
            f"Loopback cluster: 1 master, {cluster.num_replicas} replicas, {cluster.num_sentinels} sentinels, "
            f"down-after-milliseconds {cluster.down_after_ms}"
        )

        ha_rate, plain_rate, ratio, ha_cpu, plain_cpu = steady_state(cluster, args.steady_seconds)
        print("\nSteady state, one connection, SET in a loop (40 alternating rounds, medians):")
        print(f"  redis_ha        {ha_rate:10.0f} cmd/s   client CPU {ha_cpu:6.1f} us/cmd")
        print(
            f"  plain redis-py  {plain_rate:10.0f} cmd/s   client CPU {plain_cpu:6.1f} us/cmd (straight to the master)"
        )
        print(f"  ratio           {ratio:10.3f}   (median of per-round ratios; target >= 0.97)")

        ha = redis_ha.connect(env=cluster.env())
        sentinel = Sentinel(cluster.sentinel_addrs, sentinel_kwargs={"password": cluster.sentinel_password})
        stock = sentinel.master_for(
            cluster.master_name, username=cluster.app_user, password=cluster.app_password, socket_timeout=5
        )
        for kind, title, gap_target in (
            ("kill", "kill -9 of the master", down_after_s + 1),
            ("planned", "SENTINEL FAILOVER", 1.0),
        ):
            if args.failovers < 1:
                break
            results: list[tuple[Episode, Episode]] = []
            for i in range(args.failovers):
                results.append(failover_round(cluster, kind, ha, stock))
                ha_ep, stock_ep = results[-1]
                print(
                    f"  [{kind} {i + 1}/{args.failovers}] redis_ha errors {ha_ep.errors} gap {ha_ep.longest_gap_s:.2f}s"
                    f" | stock errors {stock_ep.errors} gap {stock_ep.longest_gap_s:.2f}s",
                    flush=True,
                )
            print(
                f"\n{args.failovers} x {title}, writer every {WRITE_INTERVAL_S * 1000:.0f} ms "
                f"(targets: 0 errors, max gap <= {gap_target:.1f}s):"
            )
            print(summarize("redis_ha", [r[0] for r in results]))
            print(summarize("stock Sentinel.master_for()", [r[1] for r in results]))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
