"""The drill backend over ``LoopbackCluster``: real redis-server/redis-sentinel processes on 127.0.0.1.

Lives beside the tests because the cluster it drives is test tooling; the orchestrator sees only
the ``redis_ha.drill.backend.Backend`` interface. A partition is an iptables DROP on the node's
loopback port (root only), which leaves sockets open without a reset, as a cut cable does.
"""

from __future__ import annotations

import shutil
import subprocess
import time

from redis_ha.config import Address, format_address
from redis_ha.drill.kinds import Plan

from tests.support.cluster import LoopbackCluster, Node

PAUSE_MS = 10_000
"""CLIENT PAUSE WRITE before SENTINEL FAILOVER; lifted by restore once the failover is seen, ms."""
IPTABLES_COMMENT = "redis-ha-drill"


def _iptables_rules(port: int) -> list[list[str]]:
    """The rules that cut one loopback port: requests in, replies out."""
    tag = ["-m", "comment", "--comment", f"{IPTABLES_COMMENT}-{port}", "-j", "DROP"]
    return [
        ["INPUT", "-i", "lo", "-p", "tcp", "--dport", str(port), *tag],
        ["OUTPUT", "-o", "lo", "-p", "tcp", "--sport", str(port), *tag],
    ]


class LoopbackBackend:
    name = "loopback"

    def __init__(self, cluster: LoopbackCluster) -> None:
        self.cluster = cluster

    def client_env(self) -> dict[str, str]:
        return self.cluster.env()

    def prometheus_url(self) -> tuple[str | None, str]:
        return None, "no monitoring host on the loopback cluster"

    def alert_receiver_url(self) -> tuple[str | None, str]:
        return None, "no monitoring host on the loopback cluster"

    def _node(self, target: Address | None) -> Node:
        assert target is not None, "this drill kind needs a target node"
        return self.cluster.node_for(target)

    def backup(self) -> str:
        raise ValueError("the loopback backend takes no backups (total-loss runs on hosts: scenario backup)")

    def break_(self, plan: Plan, target: Address | None) -> str:
        cluster = self.cluster
        if plan.action == "rolling-restart":
            return self._rolling_restart()
        node = self._node(target)
        what = f"{node.name} ({format_address(node.addr)}, pid {node.pid})"
        if plan.action == "kill":
            cluster.kill_node(node)
            return f"SIGKILLed {what}"
        if plan.action == "stop":
            cluster.stop_node(node)
            return f"stopped {what}"
        if plan.action == "freeze":
            cluster.freeze(node)
            return f"SIGSTOPped {what}"
        if plan.action == "restart":
            cluster.stop_node(node)
            cluster.start_node(node)
            return f"restarted {what}, now pid {node.pid}"
        if plan.action == "cut":
            if shutil.which("iptables") is None:
                raise RuntimeError("partition-master on loopback needs iptables (and root)")
            for rule in _iptables_rules(node.port):
                subprocess.run(["iptables", "-I", *rule], check=True)
            return f"dropped every packet to and from {what}"
        if plan.action == "failover":
            with cluster.redis_client(node) as client:
                client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
            cluster.sentinel_failover()
            return f"paused writes on {what} for at most {PAUSE_MS} ms and asked Sentinel to fail it over"
        raise ValueError(f"the loopback backend cannot {plan.action}")

    def restore(self, plan: Plan, target: Address | None) -> str:
        """Undo everything any drill may have done to the target (idempotent), then say what it did."""
        if target is None:
            return self._everything_running()
        node = self._node(target)
        done = []
        if plan.action == "cut":
            removed = 0
            for rule in _iptables_rules(node.port):
                while subprocess.run(["iptables", "-D", *rule], capture_output=True, check=False).returncode == 0:
                    removed += 1
            done.append(f"healed the cut ({removed} DROP rule(s) removed)")
        if node.frozen:
            self.cluster.thaw(node)
            done.append(f"thawed {node.name} (pid {node.pid})")
        if not node.running:
            self.cluster.start_node(node)
            done.append(f"started {node.name} again (pid {node.pid})")
        if plan.action == "failover":
            done.append(self._finish_failover(node))
        return "; ".join(done) or f"{node.name} needed nothing"

    def _finish_failover(self, node: Node) -> str:
        master = self.cluster.master_addr()
        with self.cluster.redis_client(node) as client:
            if master != node.addr:
                client.execute_command("REPLICAOF", master[0], str(master[1]))
            client.execute_command("CLIENT", "UNPAUSE")
        return f"made {node.name} a replica of {format_address(master)} and unpaused it"

    def _everything_running(self) -> str:
        started = []
        for node in [*self.cluster.nodes, *self.cluster.sentinels]:
            if node.frozen:
                self.cluster.thaw(node)
            if not node.running:
                self.cluster.start_node(node)
                started.append(node.name)
        return f"started {', '.join(started)} again" if started else "every node was running"

    def _rolling_restart(self) -> str:
        """What ansible/upgrade.yml does: replicas, the master after a paused failover, then sentinels."""
        cluster = self.cluster
        for node in cluster.replica_nodes():
            cluster.stop_node(node)
            cluster.start_node(node)
            cluster.wait_replica_of(node, cluster.master_addr())
        cluster.wait_healthy(60)  # Sentinel must see the restarted replicas before it can promote one
        old = cluster.master_node()
        with cluster.redis_client(old) as client:
            client.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        cluster.sentinel_failover()
        new = cluster.wait_for_master_change(old.addr)
        with cluster.redis_client(old) as client:
            client.execute_command("REPLICAOF", new[0], str(new[1]))
            client.execute_command("CLIENT", "UNPAUSE")
        cluster.stop_node(old)
        cluster.start_node(old)
        cluster.wait_replica_of(old, new)
        for index in range(len(cluster.sentinels)):
            cluster.stop_node(cluster.sentinels[index])
            cluster.start_sentinel(index)
            time.sleep(1.0)
        return f"restarted every node; master moved {format_address(old.addr)} -> {format_address(new)}"
