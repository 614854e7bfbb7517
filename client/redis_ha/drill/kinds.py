"""The drill kinds: what each one breaks, on which node, and how it is undone. Pure data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from redis_ha.config import Address, format_address
from redis_ha.health import Observation

TargetRole = Literal["master", "replica", "sentinel", "cluster"]
Action = Literal["kill", "stop", "freeze", "cut", "failover", "restart", "rolling-restart", "wipe"]


@dataclass(frozen=True)
class Plan:
    """One drill kind. ``action`` is done to a node of ``target`` role; ``undo`` names what restores it."""

    kind: str
    target: TargetRole
    action: Action
    undo: str
    expects_failover: bool
    description: str


KINDS: dict[str, Plan] = {
    plan.kind: plan
    for plan in (
        Plan("kill-master", "master", "kill", "start the killed redis-server again", True,
             "SIGKILL the master's redis-server (a crash)"),
        Plan("stop-master", "master", "stop", "start the stopped redis-server again", True,
             "stop the master's redis-server cleanly (SIGTERM, as a reboot does)"),
        Plan("freeze-master", "master", "freeze", "SIGCONT the frozen redis-server", True,
             "SIGSTOP the master's redis-server: it keeps its sockets open and answers nothing"),
        Plan("partition-master", "master", "cut", "heal the network cut", True,
             "cut the master's host off the network (packets dropped, no TCP reset)"),
        Plan("sentinel-failover", "master", "failover",
             "make the old master a replica of the new one, then CLIENT UNPAUSE it", True,
             "planned failover: CLIENT PAUSE WRITE on the master, then SENTINEL FAILOVER"),
        Plan("kill-sentinel", "sentinel", "kill", "start the killed redis-sentinel again", False,
             "SIGKILL one Sentinel of the quorum (not the one beside the master)"),
        Plan("restart-replica", "replica", "restart", "make sure the replica's redis-server runs", False,
             "restart one replica's redis-server"),
        Plan("rolling-restart", "cluster", "rolling-restart", "make sure every redis-server and Sentinel runs", True,
             "the rolling upgrade/restart (ansible/upgrade.yml) end to end"),
        Plan("total-loss", "cluster", "wipe", "restore the latest backup (ansible/restore.yml)", False,
             "take a backup, then wipe every node's data (Sentinel and Redis stopped, RDB and AOF removed)"),
    )
}  # fmt: skip


def plan_for(kind: str) -> Plan:
    """The plan for ``kind``; ValueError naming the known kinds otherwise."""
    try:
        return KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown drill kind '{kind}'; known kinds: {', '.join(KINDS)}") from None


def choose_target(plan: Plan, obs: Observation) -> tuple[Address | None, str]:
    """Which node the drill acts on, and a sentence saying why. Pure.

    The master for master kinds; the first connected replica; the first answering Sentinel that
    does not share the master's host (killing that one too would take two votes away at once).
    ``None`` for ``cluster`` kinds, which act on every node in turn.
    """
    master = obs.master
    if plan.target == "cluster":
        return None, f"{plan.kind} acts on every node"
    if plan.target == "master":
        if master is None:
            return None, "no master is known"
        return master, f"the master is {format_address(master)}"
    if plan.target == "replica":
        for replica in obs.replicas:
            if replica.online:
                return replica.address, f"replica {format_address(replica.address)} is connected"
        return None, "no replica is connected"
    reachable = [s for s in obs.sentinels if s.reachable]
    for sentinel in reachable:
        if master is None or sentinel.address[0] != master[0]:
            return sentinel.address, f"sentinel {format_address(sentinel.address)} is not on the master's host"
    if reachable:
        return reachable[
            -1
        ].address, f"every sentinel shares the master's host; taking {format_address(reachable[-1].address)}"
    return None, "no sentinel answers"


def recovery_problem(plan: Plan, target: Address | None, obs: Observation, state: str, reason: str) -> str | None:
    """Why the cluster is not back to where the drill found it, or None. Pure.

    Back means healthy (``health.decide``) and, when the master was broken, the old master
    connected to the new one as a replica.
    """
    if state != "healthy":
        return f"the cluster is {state}: {reason}"
    if plan.target == "master" and target is not None:
        if obs.master == target:
            return None  # no failover happened, or it failed back: healthy is all that is asked
        if not any(r.address == target and r.online for r in obs.replicas):
            new = format_address(obs.master)
            return f"the old master {format_address(target)} is not yet a connected replica of {new}"
    return None
