"""Measure how long failovers take on a loopback cluster, in a loop, and print the figures.

    python tests/support/measure_failover.py [--runs 5] [--failover-timeout-ms 3000] [--manual]

Each run: kill the master with SIGKILL (or ask for SENTINEL FAILOVER with --manual), time until a
majority of Sentinels name a new master, restart the old node, time until the cluster is healthy.
Nothing is asserted; this is how DEFAULT_FAILOVER_TIMEOUT_MS was chosen.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.cluster import (
    DEFAULT_DOWN_AFTER_MS,
    DEFAULT_FAILOVER_TIMEOUT_MS,
    ClusterError,
    LoopbackCluster,
)


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no successful run"
    return (
        f"{name}: min {min(values):.2f} s, median {statistics.median(values):.2f} s, "
        f"max {max(values):.2f} s over {len(values)} runs"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--failover-timeout-ms", type=int, default=DEFAULT_FAILOVER_TIMEOUT_MS)
    parser.add_argument("--down-after-ms", type=int, default=DEFAULT_DOWN_AFTER_MS)
    parser.add_argument("--manual", action="store_true", help="SENTINEL FAILOVER instead of SIGKILL")
    args = parser.parse_args()

    agree: list[float] = []
    healthy: list[float] = []
    failures = 0
    started = time.monotonic()
    with LoopbackCluster(down_after_ms=args.down_after_ms, failover_timeout_ms=args.failover_timeout_ms) as cluster:
        print(
            f"cluster up in {time.monotonic() - started:.2f} s; down-after {args.down_after_ms} ms, "
            f"failover-timeout {args.failover_timeout_ms} ms, {'manual' if args.manual else 'kill'} failovers"
        )
        for run in range(1, args.runs + 1):
            begin = time.monotonic()
            try:
                old = cluster.sentinel_failover() if args.manual else cluster.kill_master()
                new = cluster.wait_for_master_change(old, timeout_s=30)
                agreed = time.monotonic() - begin
                if not args.manual:
                    cluster.start_node(cluster.node_for(old))
                cluster.wait_healthy(timeout_s=60)
            except ClusterError as exc:
                failures += 1
                print(f"run {run}: FAILED after {time.monotonic() - begin:.2f} s: {str(exc).splitlines()[0]}")
                cluster.wait_healthy(timeout_s=60)
                continue
            total = time.monotonic() - begin
            settled = cluster.master_addr()
            if settled != new:
                failures += 1
                print(f"run {run}: FAILED: {old[1]} -> {new[1]}, then a second failover to {settled[1]}")
                continue
            agree.append(agreed)
            healthy.append(total)
            print(f"run {run}: {old[1]} -> {new[1]}: sentinels agree after {agreed:.2f} s, healthy after {total:.2f} s")
    print(summary("kill/request -> majority of sentinels agree", agree))
    print(summary("kill/request -> healthy again (old node restarted)", healthy))
    print(f"failed runs: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
