"""The small interface a drill breaks and restores a cluster through.

Two implementations: ``redis_ha.drill.hosts.HostsBackend`` (real hosts, over SSH with Ansible)
and ``tests/drill/loopback.py`` (the loopback test cluster). The orchestrator observes the
cluster itself, through Sentinel with ``client_env()``, so both are judged the same way.
"""

from __future__ import annotations

from typing import Protocol

from redis_ha.config import Address
from redis_ha.drill.kinds import Plan


class Backend(Protocol):
    name: str

    def client_env(self) -> dict[str, str]:
        """``REDIS_*`` variables an app on this cluster uses (for the traffic and for observing)."""
        ...

    def break_(self, plan: Plan, target: Address | None) -> str:
        """Do ``plan.action`` to the node at ``target``; return a sentence saying what was done."""
        ...

    def backup(self) -> str:
        """Take a backup of the cluster now (the total-loss drill's, before its wipe); a sentence saying which."""
        ...

    def restore(self, plan: Plan, target: Address | None) -> str:
        """Undo whatever ``break_`` did, even half of it; safe to call when nothing was broken."""
        ...

    def prometheus_url(self) -> tuple[str | None, str]:
        """The Prometheus to read alert times from, or None and a sentence saying why there is none."""
        ...

    def alert_receiver_url(self) -> tuple[str | None, str]:
        """A webhook receiver listing the notifications it got (see ``alerts.first_delivery``), or None and why."""
        ...
