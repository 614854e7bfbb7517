"""Running the real ``redis-ha worker`` CLI as a subprocess, and waiting on what it does."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tests.support import processes
from tests.support.cluster import LoopbackCluster

REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_env(cluster: LoopbackCluster, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RQ_"))}
    env |= cluster.env()
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env |= dict(extra or {})
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redis_ha.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=REPO_ROOT,
    )


@contextlib.contextmanager
def worker_process(
    cluster: LoopbackCluster,
    log_path: Path,
    queues: tuple[str, ...] = ("default",),
    cli_args: tuple[str, ...] = (),
    **extra: str,
) -> Iterator[subprocess.Popen[bytes]]:
    """``redis-ha worker QUEUE...`` in the background; stopped (SIGTERM, then SIGKILL) by its pid."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "redis_ha.cli", "worker", *cli_args, *queues],
            env=worker_env(cluster, extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        processes.stop(process, timeout_s=15)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.1) -> float:
    """Poll ``condition`` until true; return the seconds it took. AssertionError naming ``what`` otherwise."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"gave up after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started
