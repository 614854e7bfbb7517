"""Counting acknowledged writes that a failover lost, and the kit's planned failover, on a loopback cluster.

* ``AckLedger`` records every key a writer got an acknowledgement for; ``lost_keys`` asks the
  final master which of them are missing. A write acknowledged and then absent is a lost write.
* ``planned_failover`` fails the master over with the kit's own script (``roles/redis_ha/files/
  failover.sh``, what restarts, upgrades and retiring use on hosts): writes paused on the old
  master (``CLIENT PAUSE WRITE``) until every replica has its last offset, ``SENTINEL FAILOVER``,
  the old master made a replica of the new one as soon as it is promoted, then writes let
  through again.
* ``SwitchCounter`` counts ``+switch-master`` announcements, so a second failover right after the
  first (a just-promoted master judged down) shows up in a round's figures.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.cluster import Addr, ClusterError, LoopbackCluster

KEY_BATCH = 500
"""Keys checked or deleted per round trip."""

PLANNED_PAUSE_MS = 15000
"""``CLIENT PAUSE ... WRITE`` length of a planned failover, ms (``redis_failover_write_pause_ms``'s default)."""

FAILOVER_SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "redis_ha" / "files" / "failover.sh"
"""The kit's planned failover, which ``planned_failover`` runs as the role does."""


@dataclass(frozen=True)
class PlannedFailover:
    """What ``planned_failover`` did: the new master, and when (seconds after the pause) it was
    found and writes were let through again; how long the replicas took to catch up with the
    paused master, and how many bytes of the old master's stream the new master lacked (0: none lost)."""

    new_master: Addr
    found_after_s: float
    unpaused_after_s: float
    caught_up_after_s: float
    lost_bytes: int


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


def run_failover_script(
    cluster: LoopbackCluster,
    *,
    sentinels: str | None = None,
    pause_ms: int = PLANNED_PAUSE_MS,
    wait_s: int = 10,
    node_ports: Mapping[int, int] | None = None,
    redis_cli_options: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``failover.sh`` on the cluster's master as the role does (passwords on its standard input).

    ``sentinels`` is the list it asks (``host:port`` words); by default every Sentinel of the cluster.
    A cluster that replicates over TLS gives each node's TLS port (``node_ports``: plain -> TLS)
    and redis-cli's TLS options; the master is where the Sentinels say it is.
    """
    host, port = cluster.master_addr()
    ports = node_ports or {}
    others = " ".join(
        f"{h}:{ports.get(p, p)}"
        for h, p in (node.addr for node in cluster.nodes)
        if (h, ports.get(p, p)) != (host, port)
    )
    if sentinels is None:
        sentinels = " ".join(f"{h}:{p}" for h, p in cluster.sentinel_addrs)
    # redis-cli comes with the redis-server the cluster runs.
    cli = str(Path(cluster.redis_server).with_name("redis-cli"))
    redis_cli = [cli, "--no-auth-warning", *redis_cli_options, "--user", cluster.admin_user, "--askpass"]
    sentinel_cli = [cli, "--no-auth-warning", "--askpass"]
    script_args = [cluster.master_name, host, str(port), str(pause_ms), str(wait_s), "26379", sentinels, others]
    return subprocess.run(
        ["bash", str(FAILOVER_SCRIPT), *script_args, *redis_cli, "--", *sentinel_cli],
        input=f"{cluster.admin_password}\n{cluster.sentinel_password}\n",
        capture_output=True,
        text=True,
        timeout=wait_s + 15,
        check=False,
    )


def planned_failover(
    cluster: LoopbackCluster, *, node_ports: Mapping[int, int] | None = None, redis_cli_options: Sequence[str] = ()
) -> PlannedFailover:
    """Fail the master over with the kit's own script, ``roles/redis_ha/files/failover.sh``.

    Writes wait on the old master from the pause on (before ``SENTINEL FAILOVER``, once every
    replica has the master's last offset); it becomes a replica of the new master as soon as the
    promoted replica reports itself master (or a Sentinel names it), and is then unpaused, so
    waiting writes get ``READONLY`` and a client retries them on the new master.
    """
    proc = run_failover_script(cluster, node_ports=node_ports, redis_cli_options=redis_cli_options)
    report = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    if proc.returncode != 0:
        raise ClusterError(f"failover.sh failed: {report.get('error', proc.stderr.strip() or proc.returncode)}")
    host, port = report["new_master"].split()
    found_s, unpaused_s = int(report["found_after_ms"]) / 1000, int(report["unpaused_after_ms"]) / 1000
    caught_up_s = int(report["caught_up_after_ms"]) / 1000
    return PlannedFailover((host, int(port)), found_s, unpaused_s, caught_up_s, int(report["lost_bytes"]))


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
