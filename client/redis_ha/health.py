"""Is the Redis service healthy? One observation of the whole service, and a pure decision over it.

``observe()`` asks every sentinel (master address, ``SENTINEL CKQUORUM``), the master
(``INFO replication``: replicas and their lag) and RQ (queue depths, workers), each with short
timeouts. ``decide()`` turns that into ``healthy``, ``degraded`` or ``down`` and a sentence
saying why; it touches no socket and is unit-tested on its own. ``health()`` returns both as a
JSON-ready dict for an application's health endpoint; ``redis-ha status`` prints it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from redis_ha.client import HARedis
from redis_ha.config import Address, Settings, format_address, load_settings
from redis_ha.sentinel import SentinelDirectory

logger = logging.getLogger(__name__)

State = Literal["healthy", "degraded", "down"]
EXIT_CODES: dict[State, int] = {"healthy": 0, "degraded": 1, "down": 2}

DEFAULT_MAX_REPLICA_LAG_S = 10
"""A replica that last acknowledged more than this many seconds ago makes the service degraded."""
HEALTH_RETRY_DEADLINE_S = 2.0
"""How long a health check keeps trying to reach the master, seconds."""


@dataclass(frozen=True)
class SentinelView:
    address: Address
    reachable: bool
    master: Address | None = None
    quorum_ok: bool = False
    quorum_reply: str = ""
    error: str = ""


@dataclass(frozen=True)
class ReplicaView:
    address: Address
    online: bool
    lag_s: int | None
    offset_behind: int | None


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
    if problems:
        return "degraded", "; ".join(problems)
    max_lag = max((r.lag_s or 0 for r in online), default=0)
    return "healthy", (
        f"master {format_address(obs.master)} with {len(online)} replica(s) (max lag {max_lag}s), "
        f"{len(reachable)}/{len(obs.sentinels)} sentinels, failover quorum reachable"
    )


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
    replicas = _replicas_from_info(info)
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
        replicas: Any = client.execute_command("SENTINEL", "REPLICAS", name)
    except redis.RedisError as exc:
        return SentinelView(addr, reachable=False, error=str(exc).splitlines()[0]), 0
    try:
        quorum = str(client.execute_command("SENTINEL", "CKQUORUM", name))
        ok = quorum.startswith("OK")
    except redis.ResponseError as exc:
        quorum, ok = str(exc), False
    except redis.RedisError as exc:
        return SentinelView(addr, reachable=False, error=str(exc).splitlines()[0]), 0
    return SentinelView(addr, reachable=True, master=master, quorum_ok=ok, quorum_reply=quorum), len(replicas or [])


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
            }
            for s in obs.sentinels
        ],
        "queues": obs.queues,
        "workers": obs.workers,
    }
