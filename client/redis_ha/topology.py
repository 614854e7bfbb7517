"""Where the master is and whether it is lost: one ``Topology`` per process and service, shared.

Every connection a process makes to the same service (same sentinels, master name and
credentials) goes through one ``Topology``: the worker's, its orphan sweeper's, RQ's scheduler
clone and the metrics reader alike. So a process holds one Sentinel directory (its connections to
the sentinels it asks), one ``+switch-master`` watcher (its threads and subscriptions), one
promotion probe and one outage of the master; pools attach to it and are told when the master
moves. The last pool to close closes it. A forked child keeps what its parent knew and starts a
watcher of its own on its first connection (unless told not to: a work-horse).

Which node a new master connection goes to is ``decide_master``: a pure function over what
Sentinel said, what ``ROLE``/``INFO`` told us about the master (its replication id), whether the
master is silent (the outage) and what the promotion probe found, returning the address and why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import weakref
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from redis_ha.config import Address, Secret, Settings, format_address
from redis_ha.outage import Lines, Outage
from redis_ha.promotion import PromotionProbe
from redis_ha.sentinel import SentinelDirectory
from redis_ha.watch import SwitchWatcher

if TYPE_CHECKING:
    from redis_ha.pool import HAConnectionPool

logger = logging.getLogger(__name__)

Role = Literal["master", "replica"]


@dataclass(frozen=True)
class MasterFacts:
    """What is known when a new connection to the master is about to be made."""

    sentinel: Address
    """The master Sentinel names."""
    takeover: tuple[Address, Address] | None = None
    """(lost master, replica found to have taken over from it), from an earlier probe."""
    lineage_of: Address | None = None
    """The master whose replication id we know (read with INFO when we connected to it)."""
    master_silent: bool = False
    """Commands to the master fail and it did not answer as a working master."""
    promoted: Address | None = None
    """A replica that says role:master and carries the lost master's replication history."""


@dataclass(frozen=True)
class MasterChoice:
    address: Address
    reason: str
    takeover: tuple[Address, Address] | None = None
    """What to remember for the next connection (None: forget any earlier takeover)."""


def probe_wanted(facts: MasterFacts) -> bool:
    """Whether to ask the silent master's replicas if one took over: only while Sentinel still names
    the master we lost, whose history we know, and no takeover is known yet. Not while it answers as
    a working master (NOREPLICAS: just promoted, replicas not attached), which no replica replaced."""
    known = facts.takeover is not None and facts.takeover[0] == facts.sentinel
    return facts.master_silent and facts.lineage_of == facts.sentinel and not known


def decide_master(facts: MasterFacts) -> MasterChoice:
    """Where the next master connection goes, and why. Pure."""
    sentinel = format_address(facts.sentinel)
    if facts.takeover is not None and facts.takeover[0] == facts.sentinel:
        new = format_address(facts.takeover[1])
        return MasterChoice(
            facts.takeover[1],
            f"Sentinel still names {sentinel}, which we lost; {new} took over from it",
            facts.takeover,
        )
    if facts.promoted is not None and probe_wanted(facts):
        new = format_address(facts.promoted)
        return MasterChoice(
            facts.promoted,
            f"{sentinel} is silent and replica {new} is now a master carrying its replication history",
            (facts.sentinel, facts.promoted),
        )
    return MasterChoice(facts.sentinel, f"Sentinel names {sentinel}")


def sharing_key(settings: Settings) -> Hashable:
    """Settings that reach the same service the same way share one Topology: same sentinels, master
    name, users and passwords (a password file by its path, a password by a digest), TLS files."""
    s = settings
    return (
        s.sentinels,
        s.master_name,
        s.node,
        s.sentinel_username,
        _secret_key(s.sentinel_password),
        s.username,
        _secret_key(s.password),
        s.tls,
        s.tls_ca_file,
        s.tls_cert_file,
        s.tls_key_file,
        s.port_map,
        s.sentinel_timeout_s,
        s.watched_sentinels,
    )


def _secret_key(secret: Secret | None) -> Hashable:
    if secret is None:
        return None
    if secret.path is not None:
        return ("file", str(secret.path))
    return ("digest", hashlib.sha256(secret.reveal().encode()).hexdigest())


def _outage(role: Role, target: str) -> Outage:
    what = target.replace("{", "{{").replace("}", "}}")
    return Outage(
        logger,
        Lines(
            lost=f"Lost the {what} ({{error}}); reconnecting.",
            still=f"Still reconnecting to the {what} after {{seconds:.1f}}s, attempt {{attempts}} ({{error}}).",
            back=f"Reconnected to the {role} {{where}} after {{seconds:.2f}}s.",
        ),
    )


_shared: dict[Hashable, Topology] = {}
_shared_lock = threading.Lock()


class Topology:
    """This process's view of one service; get it with ``Topology.attach(pool)``."""

    def __init__(self, settings: Settings, key: Hashable) -> None:
        self.settings = settings
        self._key = key
        self.directory = SentinelDirectory(settings) if settings.uses_sentinel else None
        self.promotion = PromotionProbe(settings)
        self.outages: dict[Role, Outage] = {
            "master": _outage("master", f"master of '{settings.master_name}'"),
            "replica": _outage("replica", "replicas"),
        }
        self.current: Address | None = None
        self.switch_epoch = 0
        self._changed = threading.Condition()
        self._pools: weakref.WeakSet[HAConnectionPool] = weakref.WeakSet()  # a pool never closed still goes
        self._watcher: SwitchWatcher | None = None
        self._watcher_pid = 0
        self._inherited: Address | None = None
        self._takeover: tuple[Address, Address] | None = None
        # The current master's replication id and replicas, to recognise a promoted replica early.
        self._lineage: tuple[Address, str] | None = None
        self._replicas_of_current: list[Address] = []

    # --- sharing ----------------------------------------------------------------------------

    @classmethod
    def attach(cls, pool: HAConnectionPool) -> Topology:
        key = sharing_key(pool.settings)
        with _shared_lock:
            topology = _shared.get(key)
            if topology is None:
                topology = _shared[key] = cls(pool.settings, key)
            topology._pools.add(pool)
        return topology

    def detach(self, pool: HAConnectionPool) -> None:
        """A pool closed; the last one closes the watcher, the directory and the probe."""
        with _shared_lock:
            if pool not in self._pools:
                return
            self._pools.discard(pool)
            if self._pools:
                return
            if _shared.get(self._key) is self:
                del _shared[self._key]
        if self._watcher is not None and self._watcher_pid == os.getpid():
            self._watcher.stop()
        self._watcher, self._watcher_pid = None, 0
        if self.directory is not None:
            self.directory.close()
        self.promotion.close()

    def _after_fork_in_child(self) -> None:
        # Locks may have been held by a thread that does not exist here; the watcher's threads are gone.
        self._changed = threading.Condition()
        self._watcher = None
        # The child first tries the master its parent last confirmed (ROLE still checks it),
        # sparing a Sentinel round trip per forked work-horse.
        self._inherited = self.current

    def ensure_watcher(self) -> None:
        """Start this process's watcher, once (the first connection in each process calls this)."""
        pid = os.getpid()
        if self._watcher_pid == pid:
            return
        with self._changed:
            if self._watcher_pid == pid:
                return
            self._watcher_pid = pid
            if self.directory is not None:
                self._watcher = SwitchWatcher(self.directory, self.on_switch)
                self._watcher.start()

    def disable_watcher(self) -> None:
        """This process will not subscribe to +switch-master (a short-lived child whose parent
        watches already). Commands still re-resolve the master through Sentinel on any error."""
        with self._changed:
            self._watcher_pid = os.getpid()

    # --- where connections go -----------------------------------------------------------------

    def master_address(self) -> Address:
        """The address for a new master connection (asks Sentinel; may probe replicas)."""
        assert self.directory is not None
        inherited, self._inherited = self._inherited, None
        if inherited is not None:
            return inherited
        lineage = self._lineage
        facts = MasterFacts(
            sentinel=self.directory.master_address(),
            takeover=self._takeover,
            lineage_of=lineage[0] if lineage else None,
            master_silent=self.outages["master"].master_silent,
        )
        if probe_wanted(facts) and lineage is not None:
            promoted = self.promotion.find(self._promotion_candidates, lineage[1])
            facts = MasterFacts(facts.sentinel, facts.takeover, facts.lineage_of, facts.master_silent, promoted)
        choice = decide_master(facts)
        if choice.takeover != self._takeover:
            logger.debug("Master connection goes to %s: %s.", format_address(choice.address), choice.reason)
        self._takeover = choice.takeover
        return choice.address

    def _promotion_candidates(self) -> list[Address]:
        """Replicas the master listed when we connected, plus any Sentinel has learned of since."""
        assert self.directory is not None
        known = self._replicas_of_current
        return known + [a for a in self.directory.replica_addresses(healthy_only=False) if a not in known]

    def wants_lineage(self, addr: Address) -> bool:
        return self._lineage is None or self._lineage[0] != addr

    def unreachable(self, addr: Address) -> None:
        """A node we took for the new master failed us: go back to asking Sentinel only."""
        takeover = self._takeover
        if takeover is not None and takeover[1] == addr:
            self._takeover = None

    def reached_master(self, addr: Address, replicas: list[Address], replid: str | None) -> None:
        """A new connection confirmed ``addr`` as the master; an unseen address means it moved."""
        if replicas:
            self._replicas_of_current = replicas
        if replid:
            self._lineage = (addr, replid)
        if addr == self.current:
            return
        previous, self.current = self.current, addr
        if previous is None:
            logger.info("Connected to master %s of '%s'.", format_address(addr), self.settings.master_name)
            return
        logger.warning(
            "Master of '%s' is now %s (was %s).",
            self.settings.master_name,
            format_address(addr),
            format_address(previous),
        )
        self._tell_pools(addr, interrupt_in_use=False)

    # --- following failover ---------------------------------------------------------------------

    def on_switch(self, old: Address, new: Address) -> None:
        """Sentinel announced a failover: every pool drops its connections and blocked ones are interrupted."""
        if new == self.current:
            return  # a connection found the new master first and told the pools already
        logger.warning(
            "Failover seen: master of '%s' moved %s -> %s.",
            self.settings.master_name,
            format_address(old),
            format_address(new),
        )
        self.current = new
        self._tell_pools(new, interrupt_in_use=True)

    def _tell_pools(self, master: Address, *, interrupt_in_use: bool) -> None:
        for pool in list(self._pools):
            pool.master_moved(master, interrupt_in_use=interrupt_in_use)
        with self._changed:
            self.switch_epoch += 1
            self._changed.notify_all()

    def wait_for_switch(self, since_epoch: int, timeout_s: float) -> None:
        """Sleep up to ``timeout_s``, waking early if the master moves."""
        with self._changed:
            self._changed.wait_for(lambda: self.switch_epoch != since_epoch, timeout=timeout_s)


def _after_fork_in_child() -> None:
    global _shared_lock  # noqa: PLW0603 - a lock held at fork() time would never be released here
    _shared_lock = threading.Lock()
    for topology in list(_shared.values()):
        topology._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
