"""Boots a one-host lab on its own bridge and subnet, uses it, and checks `down` leaves nothing.

Needs root, systemd-nspawn and the cached base image (built on first use: minutes).
The lab name is long on purpose: its interface name exercises nspawn's shortening rule.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab import lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
        reason="needs root and systemd-nspawn",
    ),
]

LAB_PY = Path(lab.__file__)
NAME = "rhktestlab"
BRIDGE = "rhkbr9"
SUBNET = "10.147.39.0/24"


def lab_cli(state_dir: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    command, rest = args[0], args[1:]
    opts = ["--name", NAME, "--bridge", BRIDGE, "--subnet", SUBNET, "--hosts", "redis1", "--state-dir", str(state_dir)]
    return subprocess.run(
        [sys.executable, str(LAB_PY), command, *opts, *rest],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    lab_cli(tmp_path, "down", "--purge", timeout=120)


def test_one_host_lab_boots_installs_from_local_repo_and_leaves_nothing(state_dir: Path) -> None:
    ok(lab_cli(state_dir, "up"))
    state = json.loads((state_dir / "state.json").read_text())
    host = state["hosts"]["redis1"]
    assert host["ip"] == "10.147.39.11"
    assert host["veth"] == lab.veth_name("rhktestlab-redis1")
    assert len(host["veth"]) == 15
    pid = host["pid"]
    assert (state_dir / "secrets" / "redis_admin_password").stat().st_mode & 0o777 == 0o600

    ssh = ["ssh", "-F", str(state_dir / "ssh_config"), "redis1"]
    installed = subprocess.run(
        [*ssh, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-tools"
         " && redis-cli --version"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "redis-cli" in installed.stdout

    assert ok(lab_cli(state_dir, "exec", "redis1", "--", "hostname")).strip() == "redis1"

    ok(lab_cli(state_dir, "link-down", "redis1"))
    cut = subprocess.run([*ssh, "-o", "ConnectTimeout=2", "true"], capture_output=True, timeout=30, check=False)
    assert cut.returncode != 0
    ok(lab_cli(state_dir, "link-up", "redis1"))
    healed = subprocess.run([*ssh, "-o", "ConnectTimeout=5", "true"], capture_output=True, timeout=30, check=False)
    assert healed.returncode == 0

    started = time.monotonic()
    ok(lab_cli(state_dir, "up"))
    assert time.monotonic() - started < 20
    assert json.loads((state_dir / "state.json").read_text())["hosts"]["redis1"]["pid"] == pid

    ok(lab_cli(state_dir, "down"))
    assert not lab.pid_alive(pid)  # gone, or a zombie the machine's init has yet to reap
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    assert not Path(f"/sys/class/net/{host['veth']}").exists()
    assert not Path(host["root"]).parent.exists()
    assert not (state_dir / "state.json").exists()
    assert (state_dir / "secrets" / "redis_admin_password").exists()
    ok(lab_cli(state_dir, "down"))  # down on nothing succeeds
