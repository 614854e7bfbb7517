"""Which Sentinel tunables differ from what the running Sentinel uses.

sentinel.conf is written once (Sentinel rewrites it), so later changes are applied
with SENTINEL SET, and only for the values that differ: a second deploy changes nothing.
"""

from __future__ import annotations

import shlex
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


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"redis_ha_sentinel_changes": sentinel_changes}
