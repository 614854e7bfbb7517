"""Stopping a helper process the tests or benchmarks started, by its own pid."""

from __future__ import annotations

import os
import signal
import subprocess


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
