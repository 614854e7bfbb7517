"""Counting acknowledged writes that a failover lost, and the kit's planned failover, on a loopback cluster.

* ``AckLedger`` records every key a writer got an acknowledgement for; ``lost_keys`` asks the
  final master which of them are missing. A write acknowledged and then absent is a lost write.
* ``planned_failover`` fails the master over the way ``roles/redis/tasks/restart.yml`` does on
  hosts: writes paused on the old master (``CLIENT PAUSE WRITE``), ``SENTINEL FAILOVER``, the old
  master made a replica of the new one at once, then writes let through again; optionally
  without waiting for Sentinel to name the new master.
* ``SwitchCounter`` counts ``+switch-master`` announcements, so a second failover right after the
  first (a just-promoted master judged down) shows up in a round's figures.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import redis

from tests.support.cluster import Addr, ClusterError, ClusterTimeoutError, LoopbackCluster

KEY_BATCH = 500
"""Keys checked or deleted per round trip."""

PLANNED_PAUSE_MS = 15000
"""``CLIENT PAUSE ... WRITE`` length of a planned failover, ms (``redis_failover_write_pause_ms``'s default)."""

NEW_MASTER_POLL_S = 0.05
"""Pause between two Sentinel polls while waiting for the new master in a planned failover, seconds."""


@dataclass(frozen=True)
class PlannedFailover:
    """What ``planned_failover`` did: the new master, and when (seconds after the pause) it was
    found and writes were let through again."""

    new_master: Addr
    found_after_s: float
    unpaused_after_s: float


class AckLedger:
    """The keys whose write was acknowledged, in order; safe to append from several threads."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._lock = threading.Lock()

    def record(self, key: str) -> None:
        with self._lock:
            self._keys.append(key)

    @property
    def keys(self) -> list[str]:
        with self._lock:
            return list(self._keys)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


def lost_keys(client: redis.Redis, keys: Sequence[str]) -> list[str]:
    """The keys among ``keys`` that ``client`` (the final master) does not hold, in their order."""
    missing: list[str] = []
    for start in range(0, len(keys), KEY_BATCH):
        batch = keys[start : start + KEY_BATCH]
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.exists(key)
        missing += [key for key, found in zip(batch, pipe.execute(), strict=True) if not found]
    return missing


def delete_keys(client: redis.Redis, keys: Iterable[str]) -> None:
    """Remove counted keys, so rounds do not grow the data set every resync copies."""
    batch = list(keys)
    for start in range(0, len(batch), KEY_BATCH):
        client.unlink(*batch[start : start + KEY_BATCH])


def planned_failover(
    cluster: LoopbackCluster,
    *,
    demote_when: Literal["sentinel", "promoted"] = "sentinel",
    pause_ms: int = PLANNED_PAUSE_MS,
    timeout_s: float = 10.0,
) -> PlannedFailover:
    """Fail the master over with writes paused, as the kit's restart does.

    Writes wait on the old master from the pause on; it becomes a replica of the new master before
    the pause ends, so they then get ``READONLY`` and a client retries them on the new master. The
    old master is unpaused whatever happens (as the role's ``always:`` does).

    ``demote_when="sentinel"`` demotes the old master once a Sentinel names the new one (what
    ``restart.yml`` waits for; Sentinel learns of the promotion at its next ``INFO`` poll, up to
    1 s later); ``"promoted"`` as soon as a replica itself reports ``role:master`` with the old
    master's replication id as ``master_replid2`` (promoted out of its stream, by Sentinel).
    """
    old = cluster.master_addr()
    old_node = cluster.node_for(old)
    with cluster.redis_client(old_node) as admin:
        replid = str(admin.info("replication")["master_replid"])
        if admin.execute_command("CLIENT", "PAUSE", pause_ms, "WRITE") not in (True, "OK"):
            raise ClusterError(f"CLIENT PAUSE WRITE refused on {old}")
        paused_at = time.monotonic()
        try:
            with cluster.sentinel_client(0) as sentinel:
                sentinel.execute_command("SENTINEL", "FAILOVER", cluster.master_name)
            deadline = time.monotonic() + timeout_s
            if demote_when == "sentinel":
                new = _first_other_master(cluster, old, deadline)
            else:
                new = _first_promoted_replica(cluster, old, replid, deadline)
            found_after_s = time.monotonic() - paused_at
            admin.execute_command("REPLICAOF", new[0], str(new[1]))
            admin.execute_command("CONFIG", "REWRITE")
            # As the role does: unpause once ROLE says replica, not after the resync.
            while str(admin.execute_command("ROLE")[0]) != "slave":
                if time.monotonic() >= deadline:
                    raise ClusterTimeoutError(f"{old} did not become a replica of {new} in time")
                time.sleep(NEW_MASTER_POLL_S)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                admin.execute_command("CLIENT", "UNPAUSE")
    return PlannedFailover(new, found_after_s, time.monotonic() - paused_at)


def _first_other_master(cluster: LoopbackCluster, old: Addr, deadline: float) -> Addr:
    """The first master other than ``old`` that any Sentinel names (the role's wait does the same)."""
    while True:
        for index in range(cluster.num_sentinels):
            with contextlib.suppress(redis.RedisError, OSError), cluster.sentinel_client(index) as sentinel:
                reply = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", cluster.master_name)
                if reply is not None and (str(reply[0]), int(reply[1])) != tuple(old):
                    return (str(reply[0]), int(reply[1]))
        if time.monotonic() >= deadline:
            raise ClusterTimeoutError(f"no Sentinel named a master other than {old} in time")
        time.sleep(NEW_MASTER_POLL_S)


def _first_promoted_replica(cluster: LoopbackCluster, old: Addr, replid: str, deadline: float) -> Addr:
    """The first node that reports itself master with ``replid`` (the old master's) as its previous history."""
    while True:
        for node in cluster.nodes:
            if node.addr == tuple(old) or not node.running:
                continue
            with contextlib.suppress(redis.RedisError, OSError), cluster.redis_client(node) as client:
                info = client.info("replication")
                if info.get("role") == "master" and info.get("master_replid2") == replid:
                    return node.addr
        if time.monotonic() >= deadline:
            raise ClusterTimeoutError(f"no replica of {old} took over in time")
        time.sleep(NEW_MASTER_POLL_S)


class SwitchCounter:
    """Counts the ``+switch-master`` messages one Sentinel publishes while it runs (a context manager)."""

    def __init__(self, cluster: LoopbackCluster, index: int = 0) -> None:
        # protocol=2: RESP3 pub/sub hangs on Sentinel.
        self._client = cluster.sentinel_client(index, protocol=2, socket_timeout=None)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switch-counter", daemon=True)
        self.switches: list[str] = []

    def __enter__(self) -> SwitchCounter:
        self._pubsub.subscribe("+switch-master")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self._pubsub.close()
        self._client.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(timeout=0.2)
            except (redis.RedisError, OSError, ValueError):
                return  # closed under us at exit
            if message and message.get("type") == "message":
                self.switches.append(str(message["data"]))
