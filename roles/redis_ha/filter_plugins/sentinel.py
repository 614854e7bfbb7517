"""What a running Sentinel does, read from its own answers and log.

``sentinel_changes``: which tunables differ from what the running Sentinel uses. sentinel.conf is
written once (Sentinel rewrites it), so later changes are applied with SENTINEL SET, and only for
the values that differ: a second deploy changes nothing.

``sentinel_config_moved``: sentinel.conf as a Sentinel is restarted with when a running cluster
switches TLS on or off (README, "Turning TLS on or off"): every port it names moved to the new
mode's twin, and ``tls-replication`` for that mode.

``failover_gate``: when this Sentinel will next agree to start a failover. After it tried one
(``+try-failover``) or voted in a failover election (``+vote-for-leader``) it refuses to start
another for 2 x failover-timeout; Sentinel does not report that time, only logs the events.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from typing import Any

# SENTINEL MASTER does not report the credentials; they are read from sentinel.conf.
_FILE_ONLY = ("auth-user", "auth-pass")


def sentinel_running_settings(master_lines: list[str], config_text: str, master_name: str) -> dict[str, str]:
    """SENTINEL MASTER (--raw, alternating field/value lines) plus the file's credentials."""
    lines = [str(line) for line in master_lines]
    running = dict(zip(lines[::2], lines[1::2], strict=False))
    for raw in (config_text or "").splitlines():
        try:
            words = shlex.split(raw.strip())
        except ValueError:
            words = raw.split()
        if len(words) >= 4 and words[0] == "sentinel" and words[1] in _FILE_ONLY and words[2] == master_name:
            running[words[1]] = " ".join(words[3:])
    return running


def sentinel_changes(
    desired: dict[str, Any], master_lines: list[str], config_text: str, master_name: str
) -> list[list[str]]:
    """[[name, value], ...] for every desired tunable the running Sentinel does not have."""
    running = sentinel_running_settings(master_lines, config_text, master_name)
    return [[name, str(value)] for name, value in desired.items() if running.get(name) != str(value)]


# Journal lines as `journalctl -o short-unix` prints them: "<epoch seconds> <host> <unit>: ... <event> ...".
_GATE_EVENTS = ("+try-failover", "+vote-for-leader")


def failover_gate(journal_lines: list[str], failover_timeout_ms: int | str, now: float | str) -> dict[str, Any]:
    """The last failover attempt or vote in the journal, and when the next failover may start.

    Returns ``event`` and ``at`` (epoch seconds, or None when the journal has neither),
    ``allowed_at``, ``wait_s`` (0 when a failover may start now) and ``reason``, a sentence.
    """
    window_s = 2 * int(failover_timeout_ms) / 1000
    last: tuple[float, str] | None = None
    for line in journal_lines:
        words = str(line).split()
        event = next((word for word in words if word in _GATE_EVENTS), None)
        if event is None:
            continue
        try:
            at = float(words[0])
        except (IndexError, ValueError):
            continue
        if last is None or at >= last[0]:
            last = (at, event)
    if last is None:
        return {
            "event": None,
            "at": None,
            "allowed_at": None,
            "wait_s": 0,
            "reason": "no failover attempt or vote in its journal of the last day: it may start one now",
        }
    at, event = last
    allowed_at = at + window_s
    wait_s = max(0, round(allowed_at - float(now)))
    what = "tried a failover" if event == "+try-failover" else "voted in a failover election"
    when = f"will not start another before {_utc(allowed_at)} (in {wait_s} s)" if wait_s else "may start one now"
    return {
        "event": event,
        "at": at,
        "allowed_at": allowed_at,
        "wait_s": wait_s,
        "reason": f"it {what} at {_utc(at)}, so it {when} (2 x failover-timeout = {window_s:.0f} s)",
    }


# The lines of sentinel.conf that name a port of a Redis node or Sentinel, the port as group 2.
_PORT_LINE = re.compile(
    r"^(\s*sentinel\s+(?:monitor|known-replica|known-sentinel)\s+\S+\s+\S+\s+)(\d+)(.*)$"
    r"|^(\s*sentinel\s+announce-port\s+)(\d+)(\s*)$"
)


def sentinel_config_moved(config_text: str, ports: dict[Any, Any], tls: bool) -> str:
    """``config_text`` with every port of ``ports`` (old -> new) it names replaced, and
    ``tls-replication`` set to ``tls``; the listeners (``port``, ``tls-port``) are left as they are.

    A Sentinel that has not moved yet has also listed the replicas at their new ports (the master
    names them there once they replicate in the new mode): each line is kept once, since a second
    ``known-replica`` line for one address stops Sentinel from starting. Pure.
    """
    moves = {int(old): int(new) for old, new in ports.items()}
    kept: list[str] = []
    for original in str(config_text).splitlines():
        match = _PORT_LINE.match(original)
        if match is None:
            if not re.match(r"^\s*tls-replication\s", original):
                kept.append(original)
            continue
        head, port, tail = match.group(1, 2, 3) if match[1] is not None else match.group(4, 5, 6)
        moved = f"{head}{moves.get(int(port), int(port))}{tail}"
        if moved not in kept:
            kept.append(moved)
    kept.append(f"tls-replication {'yes' if tls else 'no'}")
    return "\n".join(kept) + "\n"


def sentinel_config_unmoved(config_text: str, ports: dict[Any, Any], tls: bool) -> bool:
    """Whether ``sentinel_config_moved`` has work left in ``config_text``: a line still names an
    old port, or ``tls-replication`` (no when absent) is not yet the mode's. Pure."""
    olds = {int(old) for old in ports}
    replication = "no"
    for line in str(config_text).splitlines():
        match = _PORT_LINE.match(line)
        if match and int(match[2] if match[1] is not None else match[5]) in olds:
            return True
        words = line.split()
        if len(words) == 2 and words[0] == "tls-replication":
            replication = words[1].strip('"')
    return replication != ("yes" if tls else "no")


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%H:%M:%S UTC")


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_sentinel_changes": sentinel_changes,
            "redis_ha_failover_gate": failover_gate,
            "redis_ha_sentinel_config_moved": sentinel_config_moved,
            "redis_ha_sentinel_config_unmoved": sentinel_config_unmoved,
        }
