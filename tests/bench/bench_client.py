"""Client benchmark on a loopback cluster: redis_ha next to stock redis-py, measured in one run.

Prints (never asserts):
  1. steady-state SET/s through redis_ha vs plain redis-py straight to the master (ratio);
  2. for N kill -9s of the master, N ``SENTINEL FAILOVER``s and N planned failovers (the kit's own
     script, ``roles/redis_ha/files/failover.sh``, as restarts, upgrades and retiring run it:
     ``SENTINEL FAILOVER``, writes paused with ``CLIENT PAUSE WRITE`` once Sentinel starts choosing
     the replica, the old master made a replica as soon as the promoted replica says so, then
     unpaused; how long writes waited and the bytes of the old master's stream the new master
     lacked, as the script reports them), one row per writer: errors surfaced,
     longest write gap (p50, max over rounds), writes acknowledged, and acknowledged writes missing
     from the final master once the cluster settled (lost). Writers, each SETting a unique key every
     5 ms from 0.5 s before the failover until the cluster is healthy again (the old master a replica):
       - redis_ha plain ``SET`` and stock ``Sentinel.master_for()`` plain ``SET``;
       - redis_ha ``durable_pipeline(replicas=1)`` (``SET`` + ``WAIT 1``) and with every replica (``WAIT 2``);
       - redis_ha durable enqueue (``redis_ha.rq.Queue(durable="all")``, ``WAIT`` for every replica);
     and how many rounds saw Sentinel fail over a second time (more than one ``+switch-master``).

Usage: python tests/bench/bench_client.py [--kill-rounds 20] [--failover-rounds 10] [--planned-rounds 10]
       [--steady-seconds 10] [--down-after-ms 1500]
       [--writers ha,stock,durable,durable-all,enqueue]
Each round starts at least 2 x failover-timeout after the previous failover was requested (Sentinel
refuses another one sooner after it voted). Every loop is bounded; the cluster is torn down at the
end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.sentinel import Sentinel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import redis_ha
from redis_ha.rq import Queue
from redis_ha.rq.connection import rq_connection
from redis_ha.rq.defaults import RQSettings

from tests.support.cluster import DEFAULT_DOWN_AFTER_MS, LoopbackCluster
from tests.support.write_loss import (
    AckLedger,
    PlannedFailover,
    SwitchCounter,
    delete_keys,
    lost_keys,
    planned_failover,
)

WRITE_INTERVAL_S = 0.005
MAX_EPISODE_S = 90.0
"""A writer stops on its own after this long, whatever happens to the round, seconds."""
LEAD_IN_S = 0.5
"""Writes before each failover, so every writer is connected and writing when it starts, seconds."""
SETTLE_TIMEOUT_S = 60.0
"""Longest wait for the cluster to be healthy after a round (a SENTINEL FAILOVER takes ~21 s), seconds."""
BENCH_QUEUE = "bench-durable"

KINDS = {
    "kill": "kill -9 of the master",
    "failover": "SENTINEL FAILOVER",
    "planned": "planned failover with the kit's failover.sh (writes paused, the replicas caught up, "
    "SENTINEL FAILOVER, old master demoted once the promoted replica reports role:master)",
}
WRITER_TITLES = {
    "ha": "redis_ha SET",
    "stock": "stock master_for() SET",
    "durable": "redis_ha durable_pipeline(1)",
    "durable-all": "redis_ha durable_pipeline(all)",
    "enqueue": 'redis_ha enqueue durable="all"',
}


@dataclass
class Episode:
    errors: int = 0
    longest_gap_s: float = 0.0
    acknowledged: int = 0
    lost: int = 0
    error_kinds: set[str] = field(default_factory=set)


class LedgerWriter(threading.Thread):
    """Write a unique key every 5 ms; record each acknowledged key, surfaced errors and the longest
    gap between two acknowledgements. ``write(key)`` returns the key Redis now holds for it."""

    def __init__(self, write: Callable[[str], str], prefix: str) -> None:
        super().__init__(daemon=True)
        self.write = write
        self.prefix = prefix
        self.stop_event = threading.Event()
        self.episode = Episode()
        self.ledger = AckLedger()

    def run(self) -> None:
        deadline = time.monotonic() + MAX_EPISODE_S
        last_ok = time.monotonic()
        n = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                stored = self.write(f"{self.prefix}:{n}")
                now = time.monotonic()
                self.episode.longest_gap_s = max(self.episode.longest_gap_s, now - last_ok)
                self.ledger.record(stored)
                last_ok = now
            except redis.RedisError as error:
                self.episode.errors += 1
                self.episode.error_kinds.add(type(error).__name__)
            n += 1
            time.sleep(WRITE_INTERVAL_S)
        self.episode.acknowledged = len(self.ledger)


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


class Writers:
    """The clients under test, built once and reused by every round (as a long-running app would)."""

    def __init__(self, cluster: LoopbackCluster, chosen: list[str]) -> None:
        self.chosen = chosen
        self.replicas = cluster.num_replicas
        self.ha = redis_ha.connect(env=cluster.env())
        sentinel = Sentinel(cluster.sentinel_addrs, sentinel_kwargs={"password": cluster.sentinel_password})
        self.stock = sentinel.master_for(
            cluster.master_name, username=cluster.app_user, password=cluster.app_password, socket_timeout=5
        )
        self.queue = Queue(
            BENCH_QUEUE, connection=rq_connection(self.ha.settings), durable="all", rq_settings=RQSettings()
        )

    def write_function(self, name: str) -> Callable[[str], str]:
        def plain(client: redis.Redis) -> Callable[[str], str]:
            def write(key: str) -> str:
                client.set(key, 1)
                return key

            return write

        def durable(replicas: int) -> Callable[[str], str]:
            def write(key: str) -> str:
                pipe = self.ha.durable_pipeline(replicas=replicas, timeout_ms=1000)
                pipe.set(key, 1)
                pipe.execute()
                return key

            return write

        def enqueue(_key: str) -> str:
            key = self.queue.enqueue("builtins.len", "x").key
            return key.decode() if isinstance(key, bytes) else str(key)

        functions: dict[str, Callable[[str], str]] = {
            "ha": plain(self.ha),
            "stock": plain(self.stock),
            "durable": durable(1),
            "durable-all": durable(self.replicas),
            "enqueue": enqueue,
        }
        return functions[name]

    def close(self) -> None:
        self.ha.close()
        self.stock.close()
        self.queue.connection.close()


def trigger(cluster: LoopbackCluster, kind: str) -> PlannedFailover | None:
    """Start one failover of ``kind`` and return once it is done; for a planned one, what the
    script reported, else None."""
    if kind == "kill":
        cluster.wait_for_master_change(cluster.kill_master())
    elif kind == "failover":
        cluster.wait_for_master_change(cluster.sentinel_failover())
    else:
        return planned_failover(cluster)
    return None


def failover_round(
    cluster: LoopbackCluster, kind: str, number: int, writers: Writers, not_before: float
) -> tuple[dict[str, Episode], int, float, PlannedFailover | None]:
    """One failover under every chosen writer, started no sooner than ``not_before`` (monotonic).

    Returns each writer's episode, the switches seen, when the failover was done (monotonic), and
    for a planned failover what the script reported.
    """
    running = {
        name: LedgerWriter(writers.write_function(name), f"bench:{kind}:{number}:{name}") for name in writers.chosen
    }
    with SwitchCounter(cluster) as switches:
        for writer in running.values():
            writer.start()
        time.sleep(max(LEAD_IN_S, not_before - time.monotonic()))
        old = cluster.master_addr()
        planned = trigger(cluster, kind)
        switched_at = time.monotonic()
        if kind == "kill":
            time.sleep(1.0)  # as a supervisor would, a moment later
            cluster.start_node(cluster.node_for(old))
        cluster.wait_healthy(SETTLE_TIMEOUT_S)  # the old master is a replica again: its writes are settled
        for writer in running.values():
            writer.stop_event.set()
            writer.join(MAX_EPISODE_S)
        cluster.wait_healthy(SETTLE_TIMEOUT_S)  # a second failover may have come meanwhile
        seen = len(switches.switches)
    with cluster.redis_client(cluster.master_node()) as final:
        for writer in running.values():
            keys = writer.ledger.keys
            writer.episode.lost = len(lost_keys(final, keys))
            delete_keys(final, keys)
        if "enqueue" in running:
            delete_keys(final, [f"rq:queue:{BENCH_QUEUE}", *final.scan_iter("redis-ha:rq:enqueued:*", count=1000)])
    return {name: writer.episode for name, writer in running.items()}, seen, switched_at, planned


def summarize(title: str, episodes: list[Episode]) -> str:
    gaps = [e.longest_gap_s for e in episodes]
    errors = sum(e.errors for e in episodes)
    kinds = sorted(set().union(*(e.error_kinds for e in episodes)))
    acknowledged = sum(e.acknowledged for e in episodes)
    lost = sum(e.lost for e in episodes)
    lossy = sum(1 for e in episodes if e.lost)
    return (
        f"  {title:<31} errors {errors:>4}   gap p50 {statistics.median(gaps):5.2f}s max {max(gaps):5.2f}s"
        f"   acknowledged {acknowledged:>6}   lost {lost:>5} (in {lossy} rounds)"
        + (f"   ({', '.join(kinds)})" if kinds else "")
    )


def run_kind(cluster: LoopbackCluster, kind: str, rounds: int, writers: Writers) -> None:
    spacing_s = 2 * cluster.failover_timeout_ms / 1000
    results: list[dict[str, Episode]] = []
    doubles = 0
    planned_rounds: list[PlannedFailover] = []
    not_before = 0.0
    started = time.monotonic()
    for number in range(1, rounds + 1):
        episodes, switches, switched_at, planned = failover_round(cluster, kind, number, writers, not_before)
        pause = ""
        if planned is not None:
            planned_rounds.append(planned)
            pause = (
                f" paused {planned.unpaused_after_s:.2f}s (replicas caught up in {planned.caught_up_after_s:.3f}s)"
                f" lost_bytes {planned.lost_bytes} |"
            )
        # The Sentinels started that failover before it completed: 2 x failover-timeout from then on.
        not_before = switched_at + spacing_s
        results.append(episodes)
        doubles += switches > 1
        row = " | ".join(
            f"{name} err {e.errors} gap {e.longest_gap_s:.2f}s ack {e.acknowledged} lost {e.lost}"
            for name, e in episodes.items()
        )
        print(f"  [{kind} {number}/{rounds}] switches {switches} |{pause} {row}", flush=True)
    print(
        f"\n{rounds} x {KINDS[kind]}, one write every {WRITE_INTERVAL_S * 1000:.0f} ms per writer; "
        f"{doubles} of {rounds} rounds saw a second failover ({time.monotonic() - started:.0f} s in all):"
    )
    if planned_rounds:
        pauses = [p.unpaused_after_s for p in planned_rounds]
        catch_up = max(p.caught_up_after_s for p in planned_rounds)
        print(
            f"  {'writes paused on the old master':<31} p50 {statistics.median(pauses):5.2f}s max {max(pauses):5.2f}s"
            f"   <= 0.3 s in {sum(p <= 0.3 for p in pauses)} of {len(pauses)} rounds"
            f"   replicas caught up in <= {catch_up:.3f}s   lost_bytes {sum(p.lost_bytes for p in planned_rounds)}"
        )
    for name in writers.chosen:
        print(summarize(WRITER_TITLES[name], [episodes[name] for episodes in results]))
    print(flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kill-rounds", type=int, default=20)
    parser.add_argument("--failover-rounds", type=int, default=10)
    parser.add_argument("--planned-rounds", type=int, default=10)
    parser.add_argument("--steady-seconds", type=float, default=10.0)
    parser.add_argument("--down-after-ms", type=int, default=DEFAULT_DOWN_AFTER_MS)
    parser.add_argument(
        "--writers",
        default=",".join(WRITER_TITLES),
        help=f"comma-separated, any of {', '.join(WRITER_TITLES)} (to run one client alone)",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.writers.split(",") if name.strip()]
    if unknown := [name for name in chosen if name not in WRITER_TITLES]:
        parser.error(f"unknown writers {unknown}; choose from {', '.join(WRITER_TITLES)}")
    # The client logs each failover it rides through; the figures are what this prints.
    logging.basicConfig(level=logging.ERROR)

    with LoopbackCluster(down_after_ms=args.down_after_ms) as cluster:
        print(
            f"Loopback cluster: 1 master, {cluster.num_replicas} replicas, {cluster.num_sentinels} sentinels, "
            f"down-after-milliseconds {cluster.down_after_ms}, failover-timeout {cluster.failover_timeout_ms}"
        )
        if args.steady_seconds > 0:
            ha_rate, plain_rate, ratio, ha_cpu, plain_cpu = steady_state(cluster, args.steady_seconds)
            print("\nSteady state, one connection, SET in a loop (40 alternating rounds, medians):")
            print(f"  redis_ha        {ha_rate:10.0f} cmd/s   client CPU {ha_cpu:6.1f} us/cmd")
            print(
                f"  plain redis-py  {plain_rate:10.0f} cmd/s   client CPU {plain_cpu:6.1f} us/cmd "
                "(straight to the master)"
            )
            print(f"  ratio           {ratio:10.3f}   (median of per-round ratios; target >= 0.97)\n")

        writers = Writers(cluster, chosen)
        try:
            for kind, rounds in (
                ("kill", args.kill_rounds),
                ("failover", args.failover_rounds),
                ("planned", args.planned_rounds),
            ):
                if rounds > 0:
                    run_kind(cluster, kind, rounds, writers)
        finally:
            writers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
