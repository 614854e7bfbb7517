"""What an idle ``redis-ha worker --processes 1`` holds: processes, threads and connections.

Prints (never asserts), after the worker has been idle for ``--idle-seconds`` on a loopback cluster:
  * each process of the worker (the pool's manager and its worker), its threads (``/proc/PID/task``)
    and its established TCP connections to the cluster's Redis nodes and Sentinels (its sockets in
    ``/proc/PID/fd`` matched with ``/proc/net/tcp``);
  * the same connections as the servers see them: ``CLIENT LIST`` on every node and Sentinel,
    counting the clients whose address is one of the worker's local ports.

Usage: python tests/bench/bench_idle_worker.py [--idle-seconds 15] [--redis-ha-path DIR]
``--redis-ha-path`` imports another copy of the client package (an older commit exported with
``git archive``) to compare before and after a change. The worker is stopped by its pid and the
cluster torn down at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.rq.support import REPO_ROOT, worker_env
from tests.support import processes
from tests.support.cluster import LoopbackCluster

REGISTER_TIMEOUT_S = 30.0
"""Longest wait for the worker to register itself in RQ's worker set, seconds."""
STOP_TIMEOUT_S = 15.0
"""How long the worker may take to stop after SIGTERM before it is killed, seconds."""


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it, parents first."""
    found, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue += sorted(processes.children(pid))
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established_tcp() -> dict[str, tuple[int, int]]:
    """``inode -> (local port, remote port)`` of every established TCP connection (IPv4 and IPv6)."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "01":  # ESTABLISHED
                continue
            local, remote, inode = fields[1], fields[2], fields[9]
            found[inode] = (int(local.rpartition(":")[2], 16), int(remote.rpartition(":")[2], 16))
    return found


def client_list_ports(client: redis.Redis) -> list[int]:
    """Remote ports of the clients ``CLIENT LIST`` shows on one server."""
    return [int(str(entry["addr"]).rpartition(":")[2]) for entry in client.client_list()]


def measure(cluster: LoopbackCluster, idle_s: float, redis_ha_path: str) -> None:
    env = worker_env(cluster)
    if redis_ha_path:
        env["PYTHONPATH"] = redis_ha_path + os.pathsep + env["PYTHONPATH"]
    argv = [sys.executable, "-m", "redis_ha.cli", "worker", "--processes", "1", "default"]
    with tempfile.TemporaryDirectory(prefix="idle-worker-") as tmp:
        log_path = Path(tmp) / "worker.log"
        with log_path.open("wb") as log:
            worker = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        try:
            with cluster.redis_client(cluster.master_node()) as master:
                deadline = time.monotonic() + REGISTER_TIMEOUT_S
                while not master.smembers("rq:workers") and time.monotonic() < deadline:
                    time.sleep(0.2)
                if not master.smembers("rq:workers"):
                    print(f"the worker did not register within {REGISTER_TIMEOUT_S:.0f} s:\n{log_path.read_text()}")
                    return
            time.sleep(idle_s)
            report(cluster, worker.pid, idle_s)
        finally:
            below = descendants(worker.pid)[1:]
            processes.stop(worker, STOP_TIMEOUT_S)
            for pid in below:  # a worker its manager did not take down
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def report(cluster: LoopbackCluster, root: int, idle_s: float) -> None:
    redis_ports = {node.addr[1] for node in cluster.nodes}
    sentinel_ports = {port for _, port in cluster.sentinel_addrs}
    tcp = established_tcp()
    local_ports: set[int] = set()
    print(f"Idle `redis-ha worker --processes 1` after {idle_s:.0f} s idle (cluster: 3 nodes, 3 Sentinels):")
    totals: Counter[str] = Counter()
    counted: set[str] = set()  # a socket a child inherited across fork is one connection, counted once
    for number, pid in enumerate(descendants(root)):
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
        kinds: Counter[str] = Counter()
        for inode in socket_inodes(pid):
            if inode not in tcp:
                continue
            local, remote = tcp[inode]
            if remote in redis_ports or remote in sentinel_ports:
                if inode in counted:
                    kinds["inherited"] += 1
                    continue
                counted.add(inode)
                local_ports.add(local)
                kinds["redis" if remote in redis_ports else "sentinel"] += 1
        name = "main" if number == 0 else f"child {number}"
        print(
            f"  {name:<8} pid {pid:>7}  threads {threads:>2}  "
            f"TCP to Redis nodes {kinds['redis']:>2}  TCP to Sentinels {kinds['sentinel']:>2}"
            + (f"  (and {kinds['inherited']} of its parent's, open since the fork)" if kinds["inherited"] else "")
        )
        totals.update({"threads": threads, "processes": 1, **kinds})
    seen: Counter[str] = Counter()
    for node in cluster.nodes:
        with cluster.redis_client(node) as client:
            seen["redis"] += sum(port in local_ports for port in client_list_ports(client))
    for index in range(len(cluster.sentinels)):
        with cluster.sentinel_client(index) as client:
            seen["sentinel"] += sum(port in local_ports for port in client_list_ports(client))
    print(
        f"  total    {totals['processes']} processes, {totals['threads']} threads, "
        f"{totals['redis']} connections to Redis nodes, {totals['sentinel']} to Sentinels "
        f"(CLIENT LIST on the servers: {seen['redis']} and {seen['sentinel']})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--redis-ha-path", default="", help="directory to import redis_ha from instead")
    args = parser.parse_args()
    print(f"client package: {args.redis_ha_path or 'the installed one'}")
    with LoopbackCluster() as cluster:
        measure(cluster, args.idle_seconds, args.redis_ha_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
