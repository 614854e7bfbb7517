"""Stopping a helper process the tests or benchmarks started, by its own pid."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def stop(process: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM, a bounded wait for a clean exit, then SIGKILL. A process already gone is left alone."""
    if process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


def children(pid: int) -> set[int]:
    """Pids of the live (not zombie) processes whose parent is ``pid``, read from /proc."""
    found = set()
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        state, parent = fields[0], int(fields[1])
        if parent == pid and state != "Z":
            found.add(int(stat_path.parent.name))
    return found
