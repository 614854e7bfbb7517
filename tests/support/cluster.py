"""A real Redis master, its replicas and a Sentinel quorum on 127.0.0.1, for tests and benchmarks.

``LoopbackCluster`` starts ``redis-server`` and ``redis-sentinel`` processes on free loopback ports
in a temporary directory, with ACL users and Sentinel passwords set up as in production, and gives
the operations a failover drill needs: find the master, kill or freeze a node, wait until the
Sentinels agree on a new master, bring a node back, wait until the whole cluster is healthy again.

It is plain Python so pytest fixtures, ``tests/bench/*.py`` scripts and RQ tests can all use it::

    with LoopbackCluster() as cluster:
        old = cluster.kill_master()
        new = cluster.wait_for_master_change(old)
        cluster.start_node(cluster.node_for(old))
        cluster.wait_healthy()

Every wait is bounded, every process is stopped by its own pid (never by name), and a finalizer
(also run at exit) plus a small watchdog process (for a harness killed outright) make sure an
interrupted run leaves no process behind. Drive one cluster from one thread.

Whether the cluster is healthy is decided by the pure function ``health_problem`` over observed
state (``NodeState``/``SentinelState``); it returns ``None`` or a sentence saying what is wrong,
which is what a timeout error then reports.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support import role_acl

__all__ = [
    "DEFAULT_DOWN_AFTER_MS",
    "DEFAULT_FAILOVER_TIMEOUT_MS",
    "DEFAULT_START_TIMEOUT_S",
    "HOST",
    "ClusterError",
    "ClusterTimeoutError",
    "LoopbackCluster",
    "Node",
    "NodeState",
    "ReplicaView",
    "SentinelState",
    "health_problem",
    "pids_alive",
]

Addr = tuple[str, int]
NodeKind = Literal["redis", "sentinel"]

HOST = "127.0.0.1"

DEFAULT_DOWN_AFTER_MS = 1500
"""Sentinel ``down-after-milliseconds``: how long a silent master takes to be subjectively down.

Not 1000: with 1000 ms, 5 of 19 kill-and-restart cycles measured here saw a Sentinel flag the
*just-promoted* master +sdown about 1 s after its +switch-master and reach +odown at once, starting
a second, spurious failover (the behaviour of redis/redis#8607). With 1500 ms, none in 37 cycles.
"""

DEFAULT_FAILOVER_TIMEOUT_MS = 3000
"""Sentinel ``failover-timeout``, in milliseconds.

It bounds the leader election (min(10 s, this)) and the wait for the promoted replica, and after an
*aborted* attempt (split vote) a Sentinel waits 2x this before trying again. A completed failover
resets the timer, so back-to-back failovers are not throttled by it. 3 s leaves ample room for the
promotion (Sentinel polls INFO every second during a failover) while keeping a split-vote retry
within ~6 s; see tests/support/measure_failover.py for the measured figures.
"""

DEFAULT_START_TIMEOUT_S = 20.0
"""How long ``start()`` waits for replicas to link and Sentinels to discover each other, seconds."""

DEFAULT_STOP_TIMEOUT_S = 5.0
"""How long a SIGTERMed process gets to exit before it is SIGKILLed, seconds."""

POLL_INTERVAL_S = 0.1
"""Pause between two observations in every wait loop, seconds."""

CLIENT_TIMEOUT_S = 1.0
"""Connect and read timeout of the harness's own connections, seconds (a frozen node must not hang
a wait loop)."""

PORT_ATTEMPTS = 8
"""How many free ports a process is tried on before giving up (another process may grab a port
between our probe and the server's bind)."""

LOG_TAIL_LINES = 30

PID_LOG_ENV = "LOOPBACK_CLUSTER_PID_LOG"
"""If this environment variable names a file, every started process appends "pid name addr dir" to
it, so a CI job can check afterwards, by pid, that nothing outlived the run."""

DEFAULT_REDIS_CONFIG: Mapping[str, str] = {
    "save": '""',
    "appendonly": "no",
    # Full syncs start at once instead of waiting 5 s for more replicas to join the same transfer:
    # a restarted node would otherwise add 5 s to every drill.
    "repl-diskless-sync-delay": "0",
}
"""Redis directives for a test node; override any of them with ``redis_config=``."""

# ACL rules, written as ``user`` lines (passwords are appended per cluster): the roles' own.
APP_ACL = role_acl.redis_app_rules()
"""The app user's: keys and data commands, INFO and ROLE, RQ's pub/sub channels only."""
REPLICA_ACL = role_acl.redis_replication_rules()
"""What a replica needs on its master."""
SENTINEL_ACL = role_acl.redis_sentinel_rules()
"""What Sentinel needs on every Redis node."""
ADMIN_ACL = "~* &* +@all"
SENTINEL_PEER_ACL = role_acl.sentinel_peer_rules()
"""What one Sentinel may do on another."""
SENTINEL_APP_ACL = role_acl.sentinel_app_rules()
"""What apps may do on a Sentinel: discover and subscribe, nothing that steers it."""


class ClusterError(RuntimeError):
    """The loopback cluster could not be started, driven or observed."""


class ClusterTimeoutError(ClusterError, TimeoutError):
    """A bounded wait on the loopback cluster ran out; the message says what was still wrong."""


# Observed state and the pure health decision.


@dataclass(frozen=True)
class NodeState:
    """What one running redis-server says about itself (INFO replication)."""

    port: int
    role: str | None = None
    master_port: int | None = None
    link_up: bool = False
    error: str | None = None


@dataclass(frozen=True)
class ReplicaView:
    """One entry of ``SENTINEL REPLICAS`` as a Sentinel sees it."""

    flags: frozenset[str]
    link_ok: bool
    master_port: int | None


@dataclass(frozen=True)
class SentinelState:
    """What one running Sentinel says about the monitored master."""

    port: int
    master: Addr | None = None
    flags: frozenset[str] = frozenset()
    other_sentinels: int = 0
    replicas: Mapping[int, ReplicaView] = field(default_factory=dict)
    error: str | None = None


def redis_problem(nodes: Sequence[NodeState]) -> str | None:
    """Return why the running Redis nodes are not one master with linked replicas, or None."""
    if not nodes:
        return "no redis-server is running"
    for node in nodes:
        if node.error is not None:
            return f"redis {HOST}:{node.port} does not answer: {node.error}"
    masters = [node for node in nodes if node.role == "master"]
    if len(masters) != 1:
        ports = ", ".join(str(node.port) for node in masters) or "none"
        return f"expected exactly one master among running nodes, found {len(masters)} ({ports})"
    master = masters[0]
    for node in nodes:
        if node is master:
            continue
        if node.master_port != master.port:
            return (
                f"replica {HOST}:{node.port} replicates from port {node.master_port}, "
                f"not from the master {HOST}:{master.port}"
            )
        if not node.link_up:
            return f"replica {HOST}:{node.port} has master_link_status down"
    return None


def sentinel_problem(
    master_port: int,
    running_replica_ports: Sequence[int],
    sentinels: Sequence[SentinelState],
    *,
    total_sentinels: int,
    total_replicas: int,
) -> str | None:
    """Return why the running Sentinels are not ready to fail ``master_port`` over, or None.

    Ready means: every running Sentinel names that master, has no failover or down flag on it,
    knows all other Sentinels and all replicas, and sees every running replica up and linked.
    """
    if not sentinels:
        return "no sentinel is running"
    for sentinel in sentinels:
        where = f"sentinel {HOST}:{sentinel.port}"
        if sentinel.error is not None:
            return f"{where} does not answer: {sentinel.error}"
        if sentinel.master != (HOST, master_port):
            return f"{where} names master {sentinel.master}, expected {HOST}:{master_port}"
        if sentinel.flags != {"master"}:
            return f"{where} flags the master as {','.join(sorted(sentinel.flags))}"
        if sentinel.other_sentinels != total_sentinels - 1:
            return f"{where} knows {sentinel.other_sentinels} other sentinels, expected {total_sentinels - 1}"
        if len(sentinel.replicas) != total_replicas:
            return f"{where} knows {len(sentinel.replicas)} replicas, expected {total_replicas}"
        for port in running_replica_ports:
            view = sentinel.replicas.get(port)
            if view is None:
                return f"{where} does not know replica {HOST}:{port}"
            if view.flags != {"slave"}:
                return f"{where} flags replica {HOST}:{port} as {','.join(sorted(view.flags))}"
            if view.master_port != master_port or not view.link_ok:
                return f"{where} does not yet see replica {HOST}:{port} linked to the master"
    return None


def health_problem(
    nodes: Sequence[NodeState],
    sentinels: Sequence[SentinelState],
    *,
    total_sentinels: int,
    total_replicas: int,
) -> str | None:
    """Return why the cluster is not healthy, or None when a failover would work right now."""
    problem = redis_problem(nodes)
    if problem is not None:
        return problem
    master_port = next(node.port for node in nodes if node.role == "master")
    replica_ports = [node.port for node in nodes if node.port != master_port]
    return sentinel_problem(
        master_port,
        replica_ports,
        sentinels,
        total_sentinels=total_sentinels,
        total_replicas=total_replicas,
    )


# Processes.


@dataclass(eq=False)
class Node:
    """One redis-server or redis-sentinel process slot: a port, a directory, a config and a log.

    The slot outlives its process, so a killed node can be started again on the same port and dir.
    """

    name: str
    kind: NodeKind
    port: int
    dir: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    frozen: bool = False

    @property
    def addr(self) -> Addr:
        return (HOST, self.port)

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<Node {self.name} {HOST}:{self.port} pid={self.pid}>"


# Run by a separate Python process: it learns each pid (with its start time, so a reused pid is
# never hit) on stdin, exits quietly on "done", and SIGKILLs every pid still alive if stdin closes
# without "done", which is what happens when the harness's process dies, even by SIGKILL.
_WATCHDOG_SOURCE = """
import os, signal, sys
def started(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None
watched = {}
for line in sys.stdin:
    if line.strip() == "done":
        sys.exit(0)
    pid = int(line)
    watched[pid] = started(pid)
for pid, start in watched.items():
    if start is not None and started(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


class _ProcessTable:
    """Every process a cluster started, so they can all be stopped by pid, even from a finalizer.

    A watchdog process kills them if this Python process dies without stopping them (SIGKILL,
    an unhandled SIGTERM, os._exit), when neither the finalizer nor atexit get to run.
    """

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []
        self._watchdog: subprocess.Popen[bytes] | None = None

    def add(self, process: subprocess.Popen[bytes]) -> None:
        self.processes.append(process)
        if self._watchdog is None:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", _WATCHDOG_SOURCE],
                stdin=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C in the terminal must not end it first
            )
        self._tell_watchdog(f"{process.pid}\n")

    def terminate_all(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        alive = [p for p in self.processes if p.poll() is None]
        for process in alive:
            _signal(process, signal.SIGCONT)  # a frozen process only acts on SIGTERM once resumed
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
        for process in alive:
            if process.poll() is None:
                _signal(process, signal.SIGKILL)
                process.wait()
        self._release_watchdog()

    def _tell_watchdog(self, message: str) -> None:
        if self._watchdog is not None and self._watchdog.stdin is not None:
            with contextlib.suppress(OSError):  # a dead watchdog must not break the harness
                self._watchdog.stdin.write(message.encode())
                self._watchdog.stdin.flush()

    def _release_watchdog(self) -> None:
        if self._watchdog is None:
            return
        self._tell_watchdog("done\n")
        watchdog, self._watchdog = self._watchdog, None
        if watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                watchdog.stdin.close()
        try:
            watchdog.wait(timeout=DEFAULT_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()


def _cleanup(table: _ProcessTable, directory: Path, keep_dir: bool) -> None:
    table.terminate_all()
    if not keep_dir:
        shutil.rmtree(directory, ignore_errors=True)


def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)


_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def _free_port() -> int:
    """Return a loopback port that was free a moment ago and not handed out before by this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((HOST, 0))
            port: int = probe.getsockname()[1]
        with _ports_lock:
            if port not in _ports_handed_out:
                _ports_handed_out.add(port)
                return port
    raise ClusterError("could not find a free loopback port in 100 tries")


class _PortInUseError(ClusterError):
    pass


def parse_pairs(reply: Mapping[Any, Any] | Sequence[Any]) -> dict[str, str]:
    """Turn a Sentinel reply into a dict: a RESP3 map, or RESP2's flat [k1, v1, k2, v2, ...]."""
    if isinstance(reply, Mapping):
        return {str(key): str(value) for key, value in reply.items()}
    return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}


# The cluster.


class LoopbackCluster:
    """One Redis master, ``replicas`` replicas and ``sentinels`` Sentinels on 127.0.0.1.

    With ``auth=True`` (the default) the Redis nodes have ACL users and no usable ``default`` user,
    and the Sentinels require ``sentinel_password`` from clients and from each other.
    """

    def __init__(
        self,
        replicas: int = 2,
        sentinels: int = 3,
        master_name: str = "mymaster",
        *,
        auth: bool = True,
        quorum: int = 2,
        down_after_ms: int = DEFAULT_DOWN_AFTER_MS,
        failover_timeout_ms: int = DEFAULT_FAILOVER_TIMEOUT_MS,
        parallel_syncs: int = 1,
        redis_config: Mapping[str, str] | None = None,
        sentinel_config: Sequence[str] = (),
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        base_dir: str | os.PathLike[str] | None = None,
        keep_dir: bool = False,
        redis_server: str = "redis-server",
        redis_sentinel: str = "redis-sentinel",
    ) -> None:
        if replicas < 0 or sentinels < 1 or not 1 <= quorum <= sentinels:
            raise ValueError(
                f"need replicas >= 0, sentinels >= 1 and 1 <= quorum <= sentinels, got "
                f"replicas={replicas}, sentinels={sentinels}, quorum={quorum}"
            )
        self.num_replicas = replicas
        self.num_sentinels = sentinels
        self.master_name = master_name
        self.auth = auth
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.parallel_syncs = parallel_syncs
        self.redis_config: dict[str, str] = {**DEFAULT_REDIS_CONFIG, **(redis_config or {})}
        self.sentinel_config = list(sentinel_config)
        self.start_timeout_s = start_timeout_s
        self.keep_dir = keep_dir
        self.redis_server = redis_server
        self.redis_sentinel = redis_sentinel
        self._base_dir = base_dir

        token = secrets.token_hex(8)
        self.app_user = "app"
        self.app_password = f"app-secret-{token}"
        self.admin_user = "admin"
        self.admin_password = f"admin-secret-{token}"
        self.replica_user = "replica"
        self.replica_password = f"replica-secret-{token}"
        self.sentinel_user = "sentinel"
        """ACL user the Sentinels log into Redis with (``sentinel auth-user``)."""
        self.sentinel_user_password = f"sentinel-user-secret-{token}"
        self.sentinel_password = f"sentinel-secret-{token}"
        """Password of a Sentinel's default user, its admin (``requirepass``): tests and drills only."""
        self.sentinel_peer_user = "sentinel-peer"
        self.sentinel_peer_password = f"sentinel-peer-secret-{token}"
        """What the Sentinels log into each other with (``sentinel sentinel-user``/``sentinel-pass``)."""
        self.sentinel_app_user = "app"
        self.sentinel_app_password = f"sentinel-app-secret-{token}"
        """The read-only Sentinel user apps get (``REDIS_SENTINEL_USERNAME``)."""

        self.dir: Path | None = None
        self.nodes: list[Node] = []
        """Redis nodes; ``nodes[0]`` was the first master, roles change with failovers."""
        self.sentinels: list[Node] = []
        self.started = False
        self._processes = _ProcessTable()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # Lifecycle.

    def start(self) -> Self:
        """Start every process and wait until a failover would work; raise ClusterError if not."""
        if self.started:
            return self
        if self.dir is not None:
            raise ClusterError("a stopped LoopbackCluster cannot be started again; make a new one")
        for binary in (self.redis_server, self.redis_sentinel):
            if shutil.which(binary) is None:
                raise ClusterError(
                    f"{binary} is not on PATH: install the redis-server and redis-sentinel "
                    "Debian packages (`make system-deps`)"
                )
        self.dir = Path(tempfile.mkdtemp(prefix="redis-ha-kit-cluster-", dir=self._base_dir))
        self._finalizer = weakref.finalize(self, _cleanup, self._processes, self.dir, self.keep_dir)
        self.started = True
        try:
            deadline = time.monotonic() + self.start_timeout_s
            master = self._launch_new_redis("redis-0", replica_of=None, deadline=deadline)
            for i in range(1, self.num_replicas + 1):
                self._launch_new_redis(f"redis-{i}", replica_of=master.port, deadline=deadline)
            # Sentinels learn replicas from the master's INFO, which they re-read every 10 s: start
            # them once the replicas are linked so they see them on their first INFO.
            self._wait(lambda: redis_problem(self._observe_nodes()), deadline, "replicas to link")
            for i in range(self.num_sentinels):
                self._launch_new_sentinel(f"sentinel-{i}", master.port, deadline=deadline)
            self._wait(self._health_problem, deadline, "sentinels to discover the cluster")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process this cluster started (SIGTERM, then SIGKILL) and remove its dir."""
        if self._finalizer is not None:
            self._finalizer()  # idempotent; also what runs at exit or on garbage collection
        self.started = False

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def started_pids(self) -> list[int]:
        """Pid of every process this cluster ever started, restarts included."""
        return [process.pid for process in self._processes.processes]

    # What a client under test needs.

    @property
    def sentinel_addrs(self) -> list[Addr]:
        return [sentinel.addr for sentinel in self.sentinels]

    def env(self) -> dict[str, str]:
        """Environment for the client under test; without auth the credential keys are absent."""
        env = {
            "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in self.sentinel_addrs),
            "REDIS_MASTER_NAME": self.master_name,
        }
        if self.auth:
            env |= {
                "REDIS_USERNAME": self.app_user,
                "REDIS_PASSWORD": self.app_password,
                "REDIS_SENTINEL_USERNAME": self.sentinel_app_user,
                "REDIS_SENTINEL_PASSWORD": self.sentinel_app_password,
            }
        return env

    def redis_client(
        self, target: Node | Addr, *, user: Literal["admin", "app"] = "admin", **kwargs: Any
    ) -> redis.Redis:
        """A plain redis-py client for one node, logged in as admin or app; the caller closes it."""
        host, port = target.addr if isinstance(target, Node) else target
        if self.auth:
            kwargs.setdefault("username", self.admin_user if user == "admin" else self.app_user)
            kwargs.setdefault("password", self.admin_password if user == "admin" else self.app_password)
        return self._client(host, port, **kwargs)

    def sentinel_client(self, target: int | Node | Addr = 0, **kwargs: Any) -> redis.Redis:
        """A plain redis-py client for one Sentinel (by index, node or address)."""
        if isinstance(target, int):
            target = self.sentinels[target]
        host, port = target.addr if isinstance(target, Node) else target
        if self.auth:
            kwargs.setdefault("password", self.sentinel_password)
        return self._client(host, port, **kwargs)

    # Finding nodes.

    def master_addr(self) -> Addr:
        """The master address most running Sentinels report; ClusterError if none answers."""
        answers = [state.master for state in self._observe_sentinels(full=False)]
        known = Counter(addr for addr in answers if addr is not None)
        if not known:
            raise ClusterError(f"no sentinel reports a master for {self.master_name!r}")
        return known.most_common(1)[0][0]

    def node_for(self, addr: Addr) -> Node:
        for node in [*self.nodes, *self.sentinels]:
            if node.addr == tuple(addr):
                return node
        raise ClusterError(f"{addr} is not a node of this cluster")

    def master_node(self) -> Node:
        return self.node_for(self.master_addr())

    def replica_nodes(self) -> list[Node]:
        master = self.master_addr()
        return [node for node in self.nodes if node.addr != master]

    # Breaking things.

    def kill_master(self) -> Addr:
        """SIGKILL the master the Sentinels report; return its address."""
        addr = self.master_addr()
        self.kill_node(self.node_for(addr))
        return addr

    def kill_node(self, node: Node) -> None:
        """SIGKILL one process (Redis or Sentinel) and reap it."""
        if node.process is not None and node.running:
            _signal(node.process, signal.SIGKILL)
            node.process.wait()
        node.frozen = False

    def stop_node(self, node: Node, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """SIGTERM one process, SIGKILL it after ``timeout_s``, and reap it."""
        process = node.process
        if process is not None and process.poll() is None:
            _signal(process, signal.SIGCONT)
            _signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL)
                process.wait()
        node.frozen = False

    def freeze(self, node: Node) -> None:
        """SIGSTOP a process: it keeps its sockets but answers nothing, like a hung host.

        A frozen Sentinel enters TILT mode for 30 s after ``thaw`` (its timer jumped).
        """
        if node.process is None or not node.running:
            raise ClusterError(f"{node.name} is not running")
        _signal(node.process, signal.SIGSTOP)
        node.frozen = True

    def thaw(self, node: Node) -> None:
        """SIGCONT a process stopped by ``freeze``."""
        if node.process is not None:
            _signal(node.process, signal.SIGCONT)
        node.frozen = False

    def kill_sentinel(self, index: int) -> None:
        self.kill_node(self.sentinels[index])

    def stop_all_sentinels(self) -> None:
        for sentinel in self.sentinels:
            self.stop_node(sentinel)

    def start_sentinel(self, index: int, timeout_s: float = 10.0) -> None:
        self.start_node(self.sentinels[index], timeout_s=timeout_s)

    def start_node(self, node: Node, *, as_replica: bool = True, timeout_s: float = 10.0) -> None:
        """Start a stopped node again on its port and dir, with its (Sentinel-rewritten) config.

        A Redis node comes back with its ACL users and ``masteruser``/``masterauth``. With
        ``as_replica`` (the default) it is started as a replica of the master the Sentinels
        report, unless it is that master, as a careful restart script would do. With
        ``as_replica=False`` it starts from its config file alone: a killed master then comes back
        as an empty master until Sentinel converts it (``+convert-to-slave``, about 10-20 s later).
        """
        if node.running:
            raise ClusterError(f"{node.name} is already running (pid {node.pid})")
        deadline = time.monotonic() + timeout_s
        if node.kind == "sentinel":
            self._spawn(node, self.redis_sentinel, [], deadline)
            return
        extra: list[str] = []
        if as_replica:
            with contextlib.suppress(ClusterError):
                master = self.master_addr()
                if master != node.addr:
                    extra = ["--replicaof", master[0], str(master[1])]
        self._spawn(node, self.redis_server, extra, deadline)

    # Failovers.

    def sentinel_failover(self, index: int = 0) -> Addr:
        """Ask one Sentinel for a forced failover (SENTINEL FAILOVER); return the old master.

        The Sentinels agree on the new master about 1.2 s later. The old master is still running
        and claims to be master until Sentinel demotes it (it waits 8 s first), and the Sentinels
        re-read a replica's INFO only every 10 s: ``wait_healthy`` returns about 21 s after the
        request, ``wait_replica_of(old, new)`` about 10 s.
        """
        old = self.master_addr()
        with self.sentinel_client(index) as client:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)
        return old

    def wait_for_master_change(self, old: Addr, timeout_s: float = 15.0) -> Addr:
        """Wait until a majority of all Sentinels name the same master other than ``old``."""
        majority = self.num_sentinels // 2 + 1
        deadline = time.monotonic() + timeout_s
        answers: list[Addr | None] = []
        while True:
            answers = [state.master for state in self._observe_sentinels(full=False)]
            votes = Counter(addr for addr in answers if addr is not None and addr != tuple(old))
            if votes:
                addr, count = votes.most_common(1)[0]
                if count >= majority:
                    return addr
            if time.monotonic() >= deadline:
                raise ClusterTimeoutError(
                    f"no majority of the {self.num_sentinels} sentinels moved off master "
                    f"{old} within {timeout_s:.1f} s; they answered {answers}\n" + self.log_tails(self.sentinels)
                )
            time.sleep(POLL_INTERVAL_S)

    def wait_replica_of(self, node: Node, master: Addr, timeout_s: float = 30.0) -> None:
        """Wait until ``node`` says (INFO replication) it is a replica of ``master`` with its link up.

        Cheaper than ``wait_healthy`` after a demotion by Sentinel: the Sentinels themselves only
        re-read a replica's INFO every 10 s, so their agreement comes later.
        """

        def problem() -> str | None:
            states = [state for state in self._observe_nodes() if state.port == node.port]
            if not states:
                return f"{node.name} is not running"
            state = states[0]
            if state.error is not None:
                return f"{node.name} does not answer: {state.error}"
            if state.role != "slave" or state.master_port != master[1] or not state.link_up:
                return f"{node.name} is {state.role} (master port {state.master_port}, link up: {state.link_up})"
            return None

        self._wait(problem, time.monotonic() + timeout_s, f"{node.name} to replicate from {master[0]}:{master[1]}")

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        """Wait until the running nodes are one master with linked replicas and every running
        Sentinel agrees on it and is ready for the next failover (see ``health_problem``)."""
        self._wait(self._health_problem, time.monotonic() + timeout_s, "the cluster to be healthy")

    def health_problem(self) -> str | None:
        """Why the cluster is not healthy right now, or None."""
        return self._health_problem()

    # Logs.

    def log_tails(self, nodes: Sequence[Node] | None = None, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of each process log, one titled block per process."""
        chosen = [*self.nodes, *self.sentinels] if nodes is None else nodes
        return "\n".join(
            f"--- {node.name} {HOST}:{node.port} pid={node.pid} ({node.log_path}) ---\n{node.log_tail(lines)}"
            for node in chosen
        )

    # Internals: launching.

    def _launch_new_redis(self, name: str, replica_of: int | None, deadline: float) -> Node:
        def config(port: int, directory: Path) -> str:
            return self._redis_conf(port, directory, replica_of)

        node = self._launch_on_free_port(name, "redis", config, self.redis_server, deadline)
        self.nodes.append(node)
        return node

    def _launch_new_sentinel(self, name: str, master_port: int, deadline: float) -> Node:
        def config(port: int, directory: Path) -> str:
            return self._sentinel_conf(port, directory, master_port)

        node = self._launch_on_free_port(name, "sentinel", config, self.redis_sentinel, deadline)
        self.sentinels.append(node)
        return node

    def _launch_on_free_port(
        self,
        name: str,
        kind: NodeKind,
        config: Callable[[int, Path], str],
        binary: str,
        deadline: float,
    ) -> Node:
        assert self.dir is not None
        directory = self.dir / name
        directory.mkdir()
        for _ in range(PORT_ATTEMPTS):
            port = _free_port()
            node = Node(
                name=name,
                kind=kind,
                port=port,
                dir=directory,
                config_path=directory / f"{kind}.conf",
                log_path=directory / f"{kind}.log",
            )
            node.config_path.write_text(config(port, directory))
            node.log_path.unlink(missing_ok=True)  # a failed attempt's bind error must not linger
            try:
                self._spawn(node, binary, [], deadline)
            except _PortInUseError:
                continue
            return node
        raise ClusterError(f"{name}: every one of {PORT_ATTEMPTS} free ports was taken at bind")

    def _spawn(self, node: Node, binary: str, extra_args: Sequence[str], deadline: float) -> None:
        """Start the node's process and wait until it answers as itself (INFO process_id)."""
        argv = [binary, str(node.config_path), *extra_args]
        with node.log_path.open("ab") as log:
            log.write(f"### harness: starting {' '.join(argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=node.dir,
                start_new_session=True,  # a terminal's Ctrl-C goes to the harness, not the servers
            )
        self._processes.add(process)
        if pid_log := os.environ.get(PID_LOG_ENV):
            with open(pid_log, "a", encoding="utf-8") as out:
                out.write(f"{process.pid} {node.name} {HOST}:{node.port} {node.dir}\n")
        node.process = process
        node.frozen = False
        last_error = "not tried yet"
        while True:
            if process.poll() is not None:
                tail = node.log_tail()
                if "Address already in use" in tail:
                    raise _PortInUseError(f"{node.name}: port {node.port} is taken")
                raise ClusterError(
                    f"{node.name} ({binary}) exited with code {process.returncode} at start\n"
                    f"--- {node.log_path} ---\n{tail}"
                )
            try:
                with self._client_for(node) as client:
                    info = client.info("server")
                if int(info["process_id"]) == process.pid:
                    return
                last_error = f"port {node.port} is answered by pid {info['process_id']}"
            except (redis.RedisError, OSError) as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                self.kill_node(node)
                raise ClusterTimeoutError(
                    f"{node.name} did not answer on {HOST}:{node.port} in time ({last_error})\n"
                    f"--- {node.log_path} ---\n{node.log_tail()}"
                )
            time.sleep(0.05)

    def _redis_conf(self, port: int, directory: Path, replica_of: int | None) -> str:
        lines = [
            "# Written by tests/support/cluster.py; Redis rewrites it on CONFIG REWRITE.",
            f"port {port}",
            f"bind {HOST}",
            "daemonize no",
            f'dir "{directory}"',
            'logfile ""',
            f"replica-announce-ip {HOST}",
        ]
        lines += [f"{key} {value}" for key, value in self.redis_config.items()]
        if self.auth:
            lines += [
                "user default off resetpass -@all",
                f"user {self.admin_user} on >{self.admin_password} {ADMIN_ACL}",
                f"user {self.app_user} on >{self.app_password} {APP_ACL}",
                f"user {self.replica_user} on >{self.replica_password} {REPLICA_ACL}",
                f"user {self.sentinel_user} on >{self.sentinel_user_password} {SENTINEL_ACL}",
                f"masteruser {self.replica_user}",
                f"masterauth {self.replica_password}",
            ]
        if replica_of is not None:
            lines.append(f"replicaof {HOST} {replica_of}")
        return "\n".join(lines) + "\n"

    def _sentinel_conf(self, port: int, directory: Path, master_port: int) -> str:
        name = self.master_name
        lines = [
            "# Written by tests/support/cluster.py; Sentinel rewrites it as it learns the cluster.",
            f"port {port}",
            f"bind {HOST}",
            "daemonize no",
            f'dir "{directory}"',
            'logfile ""',
            "sentinel resolve-hostnames no",
            "sentinel announce-hostnames no",
            f"sentinel announce-ip {HOST}",
            f"sentinel monitor {name} {HOST} {master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} {self.parallel_syncs}",
        ]
        if self.auth:
            lines += [
                f"requirepass {self.sentinel_password}",
                f"user {self.sentinel_peer_user} on >{self.sentinel_peer_password} {SENTINEL_PEER_ACL}",
                f"user {self.sentinel_app_user} on >{self.sentinel_app_password} {SENTINEL_APP_ACL}",
                f"sentinel sentinel-user {self.sentinel_peer_user}",
                f"sentinel sentinel-pass {self.sentinel_peer_password}",
                f"sentinel auth-user {name} {self.sentinel_user}",
                f"sentinel auth-pass {name} {self.sentinel_user_password}",
            ]
        lines += self.sentinel_config
        return "\n".join(lines) + "\n"

    # Internals: observing.

    def _client(self, host: str, port: int, **kwargs: Any) -> redis.Redis:
        kwargs.setdefault("socket_timeout", CLIENT_TIMEOUT_S)
        kwargs.setdefault("socket_connect_timeout", CLIENT_TIMEOUT_S)
        kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        kwargs.setdefault("decode_responses", True)
        return redis.Redis(host=host, port=port, **kwargs)

    def _client_for(self, node: Node) -> redis.Redis:
        if node.kind == "sentinel":
            return self.sentinel_client(node)
        return self.redis_client(node)

    def _observe_nodes(self) -> list[NodeState]:
        states = []
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with self.redis_client(node) as client:
                    info = client.info("replication")
            except (redis.RedisError, OSError) as exc:
                states.append(NodeState(node.port, error=str(exc) or type(exc).__name__))
                continue
            role = str(info["role"])
            if role == "master":
                states.append(NodeState(node.port, role="master"))
            else:
                states.append(
                    NodeState(
                        node.port,
                        role=role,
                        master_port=int(info["master_port"]),
                        link_up=info.get("master_link_status") == "up",
                    )
                )
        return states

    def _observe_sentinels(self, *, full: bool = True) -> list[SentinelState]:
        states = []
        for sentinel in self.sentinels:
            if not sentinel.running:
                continue
            try:
                states.append(self._observe_sentinel(sentinel, full=full))
            except (redis.RedisError, OSError) as exc:
                states.append(SentinelState(sentinel.port, error=str(exc) or type(exc).__name__))
        return states

    def _observe_sentinel(self, sentinel: Node, *, full: bool) -> SentinelState:
        name = self.master_name
        with self.sentinel_client(sentinel) as client:
            reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)
            master = None if reply is None else (str(reply[0]), int(reply[1]))
            if not full:
                return SentinelState(sentinel.port, master=master)
            info = parse_pairs(client.execute_command("SENTINEL", "MASTER", name))
            replicas = {}
            for entry in client.execute_command("SENTINEL", "REPLICAS", name):
                view = parse_pairs(entry)
                replicas[int(view["port"])] = ReplicaView(
                    flags=frozenset(view["flags"].split(",")),
                    link_ok=view.get("master-link-status") == "ok",
                    master_port=int(view["master-port"]) if "master-port" in view else None,
                )
        return SentinelState(
            sentinel.port,
            master=master,
            flags=frozenset(info["flags"].split(",")),
            other_sentinels=int(info["num-other-sentinels"]),
            replicas=replicas,
        )

    def _health_problem(self) -> str | None:
        return health_problem(
            self._observe_nodes(),
            self._observe_sentinels(),
            total_sentinels=self.num_sentinels,
            total_replicas=self.num_replicas,
        )

    def _wait(self, problem: Callable[[], str | None], deadline: float, what: str) -> None:
        started = time.monotonic()
        while True:
            reason = problem()
            if reason is None:
                return
            if time.monotonic() >= deadline:
                raise ClusterTimeoutError(
                    f"gave up waiting for {what} after {time.monotonic() - started:.1f} s: {reason}\n{self.log_tails()}"
                )
            time.sleep(POLL_INTERVAL_S)


def pids_alive(pids: Sequence[int]) -> list[int]:
    """Return the pids among ``pids`` that still name a live (not zombie) process."""
    alive = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            alive.append(pid)
    return alive
