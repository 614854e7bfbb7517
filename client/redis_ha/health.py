"""Is the Redis service healthy? One observation of the whole service, and a pure decision over it.

``observe()`` asks every sentinel (master address, ``SENTINEL CKQUORUM``, the replicas and
Sentinels it lists, a failover under way), the master (``INFO replication``: replicas and their
lag), each replica (a full sync or a load under way, and how far along) and RQ (queue depths,
workers), each with short timeouts. ``decide()`` turns that into ``healthy``, ``degraded`` or ``down`` and a sentence
saying why; it touches no socket and is unit-tested on its own. ``health()`` returns both as a
JSON-ready dict for an application's health endpoint; ``redis-ha status`` prints it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from redis_ha.client import HARedis
from redis_ha.config import Address, Settings, format_address, load_settings
from redis_ha.promotion import parse_info
from redis_ha.sentinel import SentinelDirectory, probe_client

logger = logging.getLogger(__name__)

State = Literal["healthy", "degraded", "down"]
EXIT_CODES: dict[State, int] = {"healthy": 0, "degraded": 1, "down": 2}

DEFAULT_MAX_REPLICA_LAG_S = 10
"""A replica that last acknowledged more than this many seconds ago makes the service degraded."""
HEALTH_RETRY_DEADLINE_S = 2.0
"""How long a health check keeps trying to reach the master, seconds."""


STALE_FLAGS = ("s_down", "o_down")
"""Flags of an entry in a Sentinel's table that is down (not only briefly disconnected): a node that
died, or one retired without every Sentinel forgetting it (a stale entry keeps counting in elections)."""


@dataclass(frozen=True)
class SentinelView:
    address: Address
    reachable: bool
    master: Address | None = None
    quorum_ok: bool = False
    quorum_reply: str = ""
    error: str = ""
    down_entries: tuple[str, ...] = ()
    """Replicas and Sentinels this Sentinel lists as down, e.g. ``replica 10.0.0.5:6379 (s_down)``."""
    failover_state: str = ""
    """Sentinel's ``failover-state`` while it runs a failover of this master, else empty."""


@dataclass(frozen=True)
class SyncProgress:
    """A replica's full sync (``phase="sync"``: bytes received of the RDB) or its load of it."""

    phase: Literal["sync", "load"]
    done_bytes: int
    total_bytes: int | None
    """None while the size is unknown (a diskless sync streams the RDB without announcing it)."""

    def describe(self) -> str:
        verb = "syncing from the master" if self.phase == "sync" else "loading its data"
        if self.total_bytes:
            return f"{verb}: {self.done_bytes * 100 // self.total_bytes}% of {_size(self.total_bytes)}"
        if not self.done_bytes and self.phase == "sync":
            return f"{verb}: waiting for the master's snapshot"
        return f"{verb}: {_size(self.done_bytes)} so far"


@dataclass(frozen=True)
class ReplicaView:
    address: Address
    online: bool
    lag_s: int | None
    offset_behind: int | None
    sync: SyncProgress | None = None
    """Set while the replica copies or loads the master's data, before it can serve or be promoted."""


@dataclass(frozen=True)
class Observation:
    master_name: str
    sentinels: tuple[SentinelView, ...]
    master: Address | None = None
    master_error: str = ""
    replicas: tuple[ReplicaView, ...] = ()
    known_replicas: int = 0
    queues: dict[str, int] = field(default_factory=dict)
    workers: int | None = None


def decide(obs: Observation, *, max_lag_s: int = DEFAULT_MAX_REPLICA_LAG_S) -> tuple[State, str]:
    """The service's state and one sentence saying why. Pure: no I/O."""
    reachable = [s for s in obs.sentinels if s.reachable]
    if not reachable:
        return "down", f"no sentinel of {len(obs.sentinels)} answered, so no client can find the master"
    if obs.master is None:
        why = f": {obs.master_error}" if obs.master_error else ""
        return "down", f"the master of '{obs.master_name}' cannot be reached{why}"
    problems: list[str] = []
    named = {s.master for s in reachable if s.master is not None}
    if len(named) > 1:
        problems.append("sentinels disagree on the master (" + ", ".join(format_address(a) for a in named) + ")")
    unreachable = len(obs.sentinels) - len(reachable)
    if unreachable:
        problems.append(f"{unreachable} of {len(obs.sentinels)} sentinels do not answer")
    no_quorum = [s for s in reachable if not s.quorum_ok]
    if no_quorum:
        problems.append(
            f"sentinel {format_address(no_quorum[0].address)} says it could not fail over: {no_quorum[0].quorum_reply}"
        )
    online = [r for r in obs.replicas if r.online]
    if not online:
        problems.append("no replica is connected, so a master failure would lose data and stop writes")
    elif len(online) < max(obs.known_replicas, len(obs.replicas)):
        problems.append(f"{len(online)} of {max(obs.known_replicas, len(obs.replicas))} replicas are connected")
    lagging = [r for r in online if r.lag_s is not None and r.lag_s > max_lag_s]
    if lagging:
        problems.append(
            f"replica {format_address(lagging[0].address)} lags {lagging[0].lag_s}s (more than {max_lag_s}s)"
        )
    problems.extend(_operations_under_way(reachable, obs.replicas))
    if problems:
        return "degraded", "; ".join(problems)
    max_lag = max((r.lag_s or 0 for r in online), default=0)
    return "healthy", (
        f"master {format_address(obs.master)} with {len(online)} replica(s) (max lag {max_lag}s), "
        f"{len(reachable)}/{len(obs.sentinels)} sentinels, failover quorum reachable"
    )


def _operations_under_way(reachable: Sequence[SentinelView], replicas: Sequence[ReplicaView]) -> list[str]:
    """What an operator watches during day-2 work: a failover, stale Sentinel entries, syncs."""
    found: list[str] = []
    failing_over = [s for s in reachable if s.failover_state]
    if failing_over:
        found.append(
            f"sentinel {format_address(failing_over[0].address)} is failing the master over "
            f"({failing_over[0].failover_state})"
        )
    listed_by: dict[str, list[str]] = {}
    for sentinel in reachable:
        for entry in sentinel.down_entries:
            listed_by.setdefault(entry, []).append(format_address(sentinel.address))
    found.extend(
        f"sentinel {', '.join(names)} {'lists' if len(names) == 1 else 'list'} {entry} as down: a node that died "
        "or was retired without every Sentinel forgetting it"
        for entry, names in listed_by.items()
    )
    found.extend(f"replica {format_address(r.address)} is {r.sync.describe()}" for r in replicas if r.sync is not None)
    return found


def observe(settings: Settings, queues: Sequence[str] | None = None) -> Observation:
    """Look at every part of the service once, with short timeouts."""
    settings = dataclasses.replace(settings, retry_deadline_s=min(settings.retry_deadline_s, HEALTH_RETRY_DEADLINE_S))
    directory = SentinelDirectory(settings)
    sentinels = []
    known_replicas = 0
    try:
        for addr in settings.sentinels:
            view, count = _observe_sentinel(directory, addr, settings.master_name)
            sentinels.append(view)
            known_replicas = max(known_replicas, count)
    finally:
        directory.close()
    obs = Observation(master_name=settings.master_name, sentinels=tuple(sentinels), known_replicas=known_replicas)
    client = HARedis(settings)
    try:
        info = client.info("replication")
        master = client.master_address
    except redis.RedisError as exc:
        return dataclasses.replace(obs, master_error=str(exc).splitlines()[0])
    replicas = tuple(_with_sync_progress(settings, replica) for replica in _replicas_from_info(info))
    queue_depths: dict[str, int] = {}
    workers: int | None = None
    try:
        from rq import Queue, Worker  # noqa: PLC0415 - the health check works without RQ in use

        names = list(queues) if queues else [q.name for q in Queue.all(connection=client)]
        for name in names:
            queue_depths[name] = Queue(name, connection=client).count
        workers = Worker.count(connection=client)
    except redis.RedisError as exc:
        logger.debug("Could not read RQ queues: %s", exc)
    finally:
        client.close()
    return dataclasses.replace(obs, master=master, replicas=replicas, queues=queue_depths, workers=workers)


def _observe_sentinel(directory: SentinelDirectory, addr: Address, name: str) -> tuple[SentinelView, int]:
    client = directory.client(addr)
    try:
        reply: Any = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
        master = (str(reply[0]), int(reply[1])) if reply else None
        replicas: Any = client.execute_command("SENTINEL", "REPLICAS", name) or []
        peers: Any = client.execute_command("SENTINEL", "SENTINELS", name) or []
        master_entry: Any = client.execute_command("SENTINEL", "MASTER", name)
    except redis.RedisError as exc:
        return SentinelView(addr, reachable=False, error=str(exc).splitlines()[0]), 0
    try:
        quorum = str(client.execute_command("SENTINEL", "CKQUORUM", name))
        ok = quorum.startswith("OK")
    except redis.ResponseError as exc:
        quorum, ok = str(exc), False
    except redis.RedisError as exc:
        return SentinelView(addr, reachable=False, error=str(exc).splitlines()[0]), 0
    down = tuple(
        _down_entry(kind, _pairs(entry))
        for kind, entries in (("replica", replicas), ("sentinel", peers))
        for entry in entries
    )
    master_fields = _pairs(master_entry)
    view = SentinelView(
        addr,
        reachable=True,
        master=master,
        quorum_ok=ok,
        quorum_reply=quorum,
        down_entries=tuple(entry for entry in down if entry),
        failover_state=master_fields.get("failover-state", "")
        if "failover_in_progress" in master_fields.get("flags", "")
        else "",
    )
    return view, len(replicas)


def _pairs(reply: Any) -> dict[str, str]:
    """A Sentinel table entry as a dict: redis-py parses some replies, RESP2 gives a flat list."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = list(reply or [])
    return {str(k): str(v) for k, v in zip(items[::2], items[1::2], strict=False)}


def _down_entry(kind: str, entry: Mapping[str, str]) -> str:
    """``replica 10.0.0.5:6379 (s_down,disconnected)`` when the entry is down, else empty."""
    flags = [flag for flag in entry.get("flags", "").split(",") if flag in STALE_FLAGS]
    if not flags:
        return ""
    return f"{kind} {entry.get('ip')}:{entry.get('port')} ({','.join(flags)})"


def _replicas_from_info(info: dict[str, Any]) -> tuple[ReplicaView, ...]:
    master_offset = int(info.get("master_repl_offset", 0))
    replicas = []
    for key, value in info.items():
        if not key.startswith("slave") or not isinstance(value, dict):
            continue
        offset = int(value.get("offset", 0))
        replicas.append(
            ReplicaView(
                address=(str(value.get("ip")), int(value.get("port", 0))),
                online=value.get("state") == "online",
                lag_s=int(value["lag"]) if "lag" in value else None,
                offset_behind=max(0, master_offset - offset),
            )
        )
    return tuple(replicas)


def _with_sync_progress(settings: Settings, replica: ReplicaView) -> ReplicaView:
    """The replica as its own ``INFO`` tells it: a full sync or a load under way, and how far along."""
    if replica.online:
        return replica
    try:
        with probe_client(settings, replica.address, sentinel=False) as client:
            info: Any = client.execute_command("INFO", "replication", "persistence")
    except redis.RedisError as exc:
        logger.debug("Could not ask replica %s how its sync goes: %s", format_address(replica.address), exc)
        return replica
    return dataclasses.replace(replica, sync=sync_progress(parse_info(info)))


def sync_progress(info: Mapping[str, str]) -> SyncProgress | None:
    """What a replica's ``INFO replication`` + ``persistence`` say about a sync or load under way."""
    if info.get("loading") == "1":
        total = int(info.get("loading_total_bytes", "0") or 0)
        return SyncProgress("load", int(info.get("loading_loaded_bytes", "0") or 0), total or None)
    if info.get("master_sync_in_progress") == "1":
        total = int(info.get("master_sync_total_bytes", "-1") or -1)
        return SyncProgress("sync", int(info.get("master_sync_read_bytes", "0") or 0), total if total > 0 else None)
    return None


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def health(settings: Settings | None = None, queues: Sequence[str] | None = None) -> dict[str, Any]:
    """The service's health as a JSON-ready dict: ``state``, ``reason`` and what was observed.

    For an application's health endpoint: answer 200 when ``state`` is not ``down``.
    """
    obs = observe(settings if settings is not None else load_settings(), queues)
    state, reason = decide(obs)
    return {
        "state": state,
        "reason": reason,
        "master_name": obs.master_name,
        "master": format_address(obs.master) if obs.master else None,
        "master_error": obs.master_error or None,
        "replicas": [
            {
                "address": format_address(r.address),
                "online": r.online,
                "lag_s": r.lag_s,
                "offset_behind": r.offset_behind,
                "sync": r.sync.describe() if r.sync else None,
            }
            for r in obs.replicas
        ],
        "sentinels": [
            {
                "address": format_address(s.address),
                "reachable": s.reachable,
                "master": format_address(s.master) if s.master else None,
                "quorum_ok": s.quorum_ok,
                "quorum": s.quorum_reply or s.error,
                "down_entries": list(s.down_entries),
                "failover_state": s.failover_state or None,
            }
            for s in obs.sentinels
        ],
        "queues": obs.queues,
        "workers": obs.workers,
    }
