"""TLS switched on for a running cluster and off again, step by step, on real processes.

The sequence the kit's deploy is to follow (README, "Turning TLS on or off"), proven here first
on redis-server and redis-sentinel processes while a writer keeps going:

on:  1. every node and Sentinel listens on a TLS port beside its plain one (``add_tls_listeners``);
     2. the clients speak TLS, with ``REDIS_PORT_MAP`` for the plain ports Sentinel still names;
     3. every node replicates over TLS (``tls-replication yes``, ``replica-announce-port`` and
        ``REPLICAOF`` the master's TLS port: a partial resync), then the Sentinels restart one at
        a time speaking TLS, the ports in their files moved to the TLS twins by the kit's own
        ``sentinel_config_moved`` filter;
     4. the nodes close their plain ports (``CONFIG SET port 0``).
off: the same steps backwards, ending where the cluster began.

At every moment a majority of the Sentinels can still fail the master over: before the
Sentinels move, the plain-text ones reach the replicas at their old entries (still listening);
once most have moved, the TLS ones reach them at the TLS ports the master now lists. What is
checked: no write errors and none lost, only partial resyncs, a working failover after each
direction, and Sentinels that list only addresses that answer in the new mode (no stale entry).
The Sentinels keep their plain port in this test (the harness reaches them there); closing it is
one more restart with ``port 0``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_ha

from tests.ansible.conftest import load_plugin
from tests.support.cluster import LoopbackCluster, Node, parse_pairs
from tests.support.tls import add_tls_listeners, make_certificates
from tests.support.write_loss import planned_failover

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

# The kit's own Sentinel failover-timeout: a plain-text Sentinel would "fix" a replica that moved
# its replication to a TLS port once this long has passed, so every Sentinel must move well within it.
FAILOVER_TIMEOUT_MS = 60_000
WRITE_INTERVAL_S = 0.01
sentinel_config_moved = load_plugin("sentinel").sentinel_config_moved


@dataclass
class Writer:
    """One client writing numbered keys until stopped; every acknowledged key is remembered."""

    client: redis_ha.HARedis
    prefix: str
    acknowledged: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 200
        while not self.stop.is_set() and time.monotonic() < deadline:
            key = f"{self.prefix}:{len(self.acknowledged)}"
            try:
                self.client.set(key, "1")
            except redis.RedisError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self.acknowledged.append(key)
            time.sleep(WRITE_INTERVAL_S)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=40)
        self.client.close()


@dataclass
class Switch:
    cluster: LoopbackCluster
    certs: dict[str, Path]
    twin: dict[int, int]
    """plain port -> TLS port of every node and Sentinel."""

    def node_client(self, node: Node, *, tls: bool) -> redis.Redis:
        if not tls:
            return self.cluster.redis_client(node)
        c = self.cluster
        return redis.Redis(
            host="127.0.0.1",
            port=self.twin[node.port],
            username=c.admin_user,
            password=c.admin_password,
            socket_timeout=2,
            decode_responses=True,
            **self.tls_kwargs(),
        )

    def tls_kwargs(self) -> dict[str, Any]:
        return {
            "ssl": True,
            "ssl_ca_certs": str(self.certs["ca.crt"]),
            "ssl_certfile": str(self.certs["client.crt"]),
            "ssl_keyfile": str(self.certs["client.key"]),
        }

    def app_client(self, *, tls: bool, port_map: dict[int, int]) -> redis_ha.HARedis:
        tls_settings: dict[str, Any] = {}
        if tls:
            tls_settings = {
                "tls": True,
                "tls_ca_file": str(self.certs["ca.crt"]),
                "tls_cert_file": str(self.certs["client.crt"]),
                "tls_key_file": str(self.certs["client.key"]),
            }
        return redis_ha.connect(env=self.cluster.env(), port_map=port_map, retry_deadline_s=30, **tls_settings)

    def master(self, *, tls: bool) -> Node:
        """The node that answers ROLE master (asked on the port of the mode it is in)."""
        masters = []
        for node in self.cluster.nodes:
            with self.node_client(node, tls=tls) as client:
                if client.execute_command("ROLE")[0] in ("master", b"master"):
                    masters.append(node)
        assert len(masters) == 1, f"expected one master, found {masters}"
        return masters[0]

    def full_syncs(self, *, tls: bool) -> int:
        """Full resyncs the nodes have served since they started (INFO stats sync_full)."""
        total = 0
        for node in self.cluster.nodes:
            with self.node_client(node, tls=tls) as client:
                total += int(client.info("stats")["sync_full"])
        return total

    def resync_reasons(self) -> str:
        """What the nodes' logs say about every full resync and refused partial one (for a failure)."""
        marks = ("Full resync", "Partial resynchronization not", "PSYNC", "MASTER <-> REPLICA sync started")
        lines = [
            f"{node.name}: {line}"
            for node in self.cluster.nodes
            for line in node.log_path.read_text(errors="replace").splitlines()
            if any(mark in line for mark in marks)
        ]
        return "\n".join(lines)

    def move_replication(self, *, tls: bool) -> None:
        """Every node replicates in the new mode; the replicas re-point at the master's port in it."""
        master = self.master(tls=True)
        master_port = self.twin[master.port] if tls else master.port
        for node in self.cluster.nodes:
            with self.node_client(node, tls=True) as client:
                client.config_set("tls-replication", "yes" if tls else "no")
                # What the master lists the node at, as the kit's redis.conf sets it.
                client.config_set("replica-announce-port", self.twin[node.port] if tls else node.port)
                if node is not master:
                    client.execute_command("REPLICAOF", "127.0.0.1", master_port)

    def move_sentinels(self, *, tls: bool) -> float:
        """Restart the Sentinels one at a time in the new mode; return how long it took in all."""
        ports = self.twin if tls else {t: p for p, t in self.twin.items()}
        started = time.monotonic()
        for index, sentinel in enumerate(self.cluster.sentinels):
            self.cluster.stop_node(sentinel)
            sentinel.config_path.write_text(sentinel_config_moved(sentinel.config_path.read_text(), ports, tls))
            self.cluster.start_sentinel(index)
            self.wait_sentinel_sees_everyone(index, tls=tls)
        return time.monotonic() - started

    def sentinel_view(self, index: int) -> tuple[dict[str, str], list[dict[str, str]], list[dict[str, str]]]:
        name = self.cluster.master_name
        with self.cluster.sentinel_client(index) as client:
            master = parse_pairs(client.execute_command("SENTINEL", "MASTER", name))
            replicas = [parse_pairs(r) for r in client.execute_command("SENTINEL", "REPLICAS", name)]
            sentinels = [parse_pairs(s) for s in client.execute_command("SENTINEL", "SENTINELS", name)]
        return master, replicas, sentinels

    def view_problem(self, index: int, *, tls: bool, moved: int | None = None) -> str | None:
        """Why Sentinel ``index`` does not yet list the master and both replicas, healthy, at the
        ports of the mode it speaks, and the Sentinels up to ``moved`` (all by default) there too;
        None when it does. A Sentinel not moved yet cannot reach a moved one, nor it them."""
        moved = len(self.cluster.sentinels) - 1 if moved is None else moved
        master, replicas, sentinels = self.sentinel_view(index)
        in_mode = self.twin if tls else {p: p for p in self.twin}
        problems = []
        if int(master["port"]) not in in_mode.values() or master["flags"] != "master":
            problems.append(f"master {master['port']} {master['flags']}")
        # info-refresh: ms since this Sentinel last read the replica's INFO over its link (a Sentinel
        # just started has read none: its clock's reading).
        shown = sorted((int(r["port"]), r["flags"], int(r["info-refresh"]) < 11_000) for r in replicas)
        if len(shown) != 2 or any(
            port not in in_mode.values() or (flags, read) != ("slave", True) for port, flags, read in shown
        ):
            problems.append(f"replicas (port, flags, INFO read lately) {shown}")
        # A peer that never answers is marked s_down after down-after-milliseconds: the caller waits that long.
        peers = {int(entry["port"]): entry["flags"] for entry in sentinels}
        for peer in self.cluster.sentinels[: moved + 1]:
            if peer is not self.cluster.sentinels[index] and peers.get(in_mode[peer.port]) != "sentinel":
                problems.append(f"sentinels {sorted(peers.items())}")
                break
        if moved == len(self.cluster.sentinels) - 1 and len(peers) != moved:
            problems.append(f"stale sentinel entries: {sorted(peers.items())}")
        return "; ".join(problems) or None

    def wait_sentinel_sees_everyone(self, index: int, *, tls: bool, timeout_s: float = 30) -> None:
        """Wait until Sentinel ``index``, just restarted, reads every replica and reaches the Sentinels
        moved so far: first down-after-milliseconds, after which a peer it cannot reach is s_down."""
        time.sleep(self.cluster.down_after_ms / 1000 + 0.5)
        deadline = time.monotonic() + timeout_s
        while (problem := self.view_problem(index, tls=tls, moved=index)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert problem is None, f"sentinel {index} after its restart: {problem}"

    def role(self, node: Node, *, tls: bool) -> str:
        with self.node_client(node, tls=tls) as client:
            return str(client.execute_command("ROLE")[0])

    def fail_over(self, *, tls: bool) -> None:
        """The kit's planned failover (failover.sh); wait until every Sentinel lists the new
        master and all of the rest again, healthy, at the ports of this mode."""
        old = self.master(tls=tls)
        old_port = self.twin[old.port] if tls else old.port
        tls_options = ["--tls", "--cacert", str(self.certs["ca.crt"])]
        tls_options += ["--cert", str(self.certs["client.crt"]), "--key", str(self.certs["client.key"])]
        planned = planned_failover(
            self.cluster, node_ports=self.twin if tls else None, redis_cli_options=tls_options if tls else ()
        )
        assert planned.lost_bytes == 0
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline:
            views = [self.view_problem(i, tls=tls) for i in range(len(self.cluster.sentinels))]
            named = {int(self.sentinel_view(i)[0]["port"]) for i in range(len(self.cluster.sentinels))}
            if views == [None] * len(views) and named == {planned.new_master[1]} != {old_port}:
                assert self.role(old, tls=tls) == "slave"
                return
            time.sleep(0.5)
        raise AssertionError(f"after SENTINEL FAILOVER: {views}, Sentinels name {named}")

    def plain_listeners(self, *, open_: bool) -> None:
        for node in self.cluster.nodes:
            with self.node_client(node, tls=True) as client:
                client.config_set("port", node.port if open_ else 0)

    def tls_listeners_off(self) -> None:
        for node in self.cluster.nodes:
            with self.node_client(node, tls=False) as client:
                client.config_set("tls-port", 0)


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[Switch]:
    certs = make_certificates(tmp_path)
    with LoopbackCluster(replicas=2, sentinels=3, failover_timeout_ms=FAILOVER_TIMEOUT_MS) as cluster:
        yield Switch(cluster, certs, add_tls_listeners(cluster, certs))


def test_tls_goes_on_and_off_on_a_running_cluster_with_writes_flowing_and_none_lost(switch: Switch) -> None:
    writers = [Writer(switch.app_client(tls=False, port_map={}), "plain")]
    full_syncs = switch.full_syncs(tls=False)

    writers.append(Writer(switch.app_client(tls=True, port_map=switch.twin), "tls"))  # the apps move
    writers[0].finish()
    switch.move_replication(tls=True)
    moved_in_s = switch.move_sentinels(tls=True)
    switch.plain_listeners(open_=False)
    with pytest.raises(redis.ConnectionError), switch.node_client(switch.cluster.nodes[0], tls=False) as plain:
        plain.ping()
    switch.fail_over(tls=True)
    assert switch.full_syncs(tls=True) == full_syncs, (
        f"a node resynced in full while TLS went on:\n{switch.resync_reasons()}"
    )

    switch.plain_listeners(open_=True)  # off: the same steps backwards
    writers.append(Writer(switch.app_client(tls=False, port_map={t: p for p, t in switch.twin.items()}), "back"))
    writers[1].finish()
    switch.move_replication(tls=False)
    moved_back_in_s = switch.move_sentinels(tls=False)
    switch.tls_listeners_off()
    switch.fail_over(tls=False)
    switch.cluster.wait_healthy()
    writers[2].finish()

    acknowledged = [key for writer in writers for key in writer.acknowledged]
    with switch.node_client(switch.master(tls=False), tls=False) as master:
        missing = [key for key, value in zip(acknowledged, master.mget(acknowledged), strict=True) if value is None]
    print(
        f"TLS on: Sentinels moved in {moved_in_s:.1f} s, off: {moved_back_in_s:.1f} s; writes acknowledged "
        f"{len(acknowledged)}, lost {len(missing)}, errors {sum(len(w.errors) for w in writers)}; "
        f"full resyncs {switch.full_syncs(tls=False) - full_syncs}"
    )
    assert [w.errors for w in writers] == [[], [], []]
    assert all(writer.acknowledged for writer in writers)
    assert missing == []
    assert switch.full_syncs(tls=False) == full_syncs, f"a node resynced in full:\n{switch.resync_reasons()}"
    # A plain-text Sentinel "fixes" a replica that points elsewhere once failover-timeout has passed.
    assert max(moved_in_s, moved_back_in_s) < FAILOVER_TIMEOUT_MS / 1000 / 2
