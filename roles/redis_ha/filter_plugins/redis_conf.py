"""Compare Redis config files by meaning rather than by text.

Redis rewrites its own config file (CONFIG REWRITE, which Sentinel issues after every
failover): it quotes strings, splits ``save`` into one line per rule, turns ``1024mb``
into ``1gb``, appends defaults such as ``latency-tracking-info-percentiles`` and, on Valkey 8,
writes its own names for some directives (``primaryauth`` for ``masterauth``). A
text comparison would then restart a healthy node on every deploy after a failover, so
the redis role writes redis.conf only when these parsed options differ.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

# Directives that may appear several times and add up instead of overriding.
_REPEATABLE = frozenset({"save", "include", "loadmodule", "rename-command", "user", "bind", "sentinel"})
# Lines Redis 7 appends on rewrite although they hold the default value.
_REWRITE_DEFAULTS = {"latency-tracking-info-percentiles": "50 99 99.9"}
# Other names of a directive -> the name redis.conf.j2 writes. Valkey 8's CONFIG REWRITE writes
# primaryuser/primaryauth; both servers still read the old slave-* spellings.
_ALIASES = {
    "primaryuser": "masteruser",
    "primaryauth": "masterauth",
    "slaveof": "replicaof",
    "slave-announce-ip": "replica-announce-ip",
    "slave-announce-port": "replica-announce-port",
    "slave-read-only": "replica-read-only",
    "slave-priority": "replica-priority",
    "slave-serve-stale-data": "replica-serve-stale-data",
    "slave-lazy-flush": "replica-lazy-flush",
    "slave-ignore-maxmemory": "replica-ignore-maxmemory",
    "min-slaves-to-write": "min-replicas-to-write",
    "min-slaves-max-lag": "min-replicas-max-lag",
}
_MEMORY = re.compile(r"^(\d+)(k|kb|m|mb|g|gb)$", re.IGNORECASE)
_UNITS = {"k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def _normalise_value(value: str) -> str:
    match = _MEMORY.match(value)
    if match:
        return str(int(match.group(1)) * _UNITS[match.group(2).lower()])
    return value


def redis_conf_options(text: str | None) -> dict[str, Any]:
    """Return {directive: value} for a redis.conf text; repeatable directives map to lists."""
    options: dict[str, Any] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, posix=True)
        except ValueError:
            words = line.split()
        if not words:
            continue
        key = words[0].lower()
        key = _ALIASES.get(key, key)
        value = " ".join(_normalise_value(word) for word in words[1:])
        if key in _REPEATABLE:
            options.setdefault(key, [])
            if key == "save" and value == "":
                options[key] = []
            else:
                options[key].append(value)
        else:
            options[key] = value
    for key, default in _REWRITE_DEFAULTS.items():
        if options.get(key) == default:
            del options[key]
    # "save 3600 1 300 100" and three single-rule lines are the same schedule.
    if "save" in options:
        options["save"] = " ".join(options["save"]).split()
    return options


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"redis_conf_options": redis_conf_options}
