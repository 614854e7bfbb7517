"""Scenario failover: what the drill in side_effect.yml did to the app's jobs, and to the cluster.

Runs after the drill and after a second deploy that changed nothing (Molecule's idempotence).
Prints one summary line: acknowledged / finished / lost / duplicated, write gap, worker restarts.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.molecule.conftest import MASTER_NAME, REDIS_HOSTS, Lab, wait_for

pytestmark = pytest.mark.lab

DRILL_DIR = "/var/lib/redis-ha-app/drill"
WORKER_UNIT = "rq-worker@default"


def read(lab: Lab, path: str) -> str:
    f = lab.host("app1").file(path)
    assert f.exists, f"{path} is missing on app1: did side_effect.yml run?"
    return str(f.content_string)


def systemd_props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def drill(lab: Lab) -> dict[str, Any]:
    acked = read(lab, f"{DRILL_DIR}/acked.log").split()
    executions = Counter(read(lab, f"{DRILL_DIR}/executions.log").split())
    producer = json.loads(read(lab, f"{DRILL_DIR}/producer.json"))
    before = systemd_props(read(lab, f"{DRILL_DIR}/worker.before"))
    after = systemd_props(read(lab, f"{DRILL_DIR}/worker.after"))
    now = systemd_props(lab.host("app1").run("systemctl show -p MainPID -p NRestarts %s", WORKER_UNIT).stdout)
    result: dict[str, Any] = {
        "acknowledged": len(acked),
        "finished": sum(1 for job in set(acked) if executions[job] > 0),
        "lost": sorted(set(acked) - set(executions)),
        "duplicated": sorted(job for job, count in executions.items() if count > 1),
        "write_gap_s": float(producer["write_gap_s"]),
        "producer_errors": int(producer["error_count"]),
        "worker_pids": [before["MainPID"], after["MainPID"], now["MainPID"]],
        "worker_restarts": int(now["NRestarts"]) - int(before["NRestarts"]),
        "master_final": read(lab, f"{DRILL_DIR}/master.final").strip(),
        "masters": [read(lab, f"{DRILL_DIR}/master.{step}").strip() for step in ("before", "after_kill", "final")],
    }
    line = (
        f"failover drill: acknowledged={result['acknowledged']} finished={result['finished']} "
        f"lost={len(result['lost'])} duplicated={len(result['duplicated'])} "
        f"write_gap={result['write_gap_s']:.2f}s producer_errors={result['producer_errors']} "
        f"worker_restarts={result['worker_restarts']} masters(before,after_kill,final)={','.join(result['masters'])}"
    )
    print(line)
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral:
        (Path(ephemeral) / "failover-summary.txt").write_text(line + "\n")
    return result


def test_the_producer_got_jobs_acknowledged_throughout(drill: dict[str, Any]) -> None:
    assert drill["acknowledged"] > 0


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_no_acknowledged_job_is_lost(drill: dict[str, Any]) -> None:
    assert drill["lost"] == [], f"{len(drill['lost'])} acknowledged jobs never ran, e.g. {drill['lost'][:5]}"


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_rode_through_without_restarting(drill: dict[str, Any]) -> None:
    assert len(set(drill["worker_pids"])) == 1, f"worker MainPID before/after/now: {drill['worker_pids']}"
    assert drill["worker_restarts"] == 0


@pytest.mark.units("redis-server", "redis-sentinel")
def test_the_redeploy_left_the_master_where_sentinel_put_it(lab: Lab, drill: dict[str, Any]) -> None:
    def agreed() -> None:
        roles = {name: lab.redis_client(name).execute_command("ROLE")[0] for name in REDIS_HOSTS}
        masters = [lab.ips[name] for name, role in roles.items() if role == "master"]
        assert masters == [drill["master_final"]], f"ROLE says {roles}, Sentinel put {drill['master_final']}"
        for name in REDIS_HOSTS:
            addr = lab.sentinel_client(name).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            assert addr is not None and addr[0] == drill["master_final"], f"sentinel on {name} names {addr}"
            if roles[name] != "master":
                assert lab.redis_client(name).info("replication")["master_link_status"] == "up", name

    wait_for(agreed)
