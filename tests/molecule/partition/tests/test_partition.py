"""Scenario partition: what a split brain and a full cut of the master did to the app's jobs and the cluster.

Runs after the drill in side_effect.yml, before scenario default's checks on the same lab (among
them the second deploy that must change nothing). Prints summary lines: the drill's (acknowledged /
finished / lost / duplicated, write gap, worker restarts, the master before, during the split,
during the cut and at the end); what the isolated master of the split did (reachable from app1,
writes it accepted and refused, jobs only it held, and how many of those were acknowledged); the
producer's errors; and the roles of the two old masters now.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.molecule.conftest import (
    DRILL_DIR,
    WORKER_UNIT,
    Drill,
    Lab,
    assert_cluster_agrees,
    assert_master_moved,
    assert_no_acknowledged_job_lost,
    assert_replica_of,
    assert_worker_rode_through,
    drill_summary,
)

pytestmark = pytest.mark.lab

SPLIT_FILE = "partition-split.json"
"""What side_effect.yml noted about the split, in Molecule's ephemeral directory."""


def _ephemeral() -> Path:
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])


def _info(text: str) -> dict[str, str]:
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line and not line.startswith("#"))


def _fields(value: str) -> dict[str, float]:
    """``calls=3,usec=9,...`` (commandstats, errorstats) as numbers."""
    return {k: float(v) for k, v in (item.split("=", 1) for item in value.split(","))}


def _delta(before: dict[str, str], after: dict[str, str], key: str, field: str) -> int:
    def value(info: dict[str, str]) -> float:
        return _fields(info[key]).get(field, 0.0) if key in info else 0.0

    return int(value(after) - value(before))


def _job_ids(keys: list[str]) -> set[str]:
    """Job ids from ``rq:job:<id>`` keys (not ``rq:job:<id>:<something>``)."""
    return {key.split(":")[2] for key in keys if key.startswith("rq:job:") and key.count(":") == 2}


def _dropped(iptables: str, chain: str) -> int:
    """Packets the DROP rules of one of the drill's chains matched (``iptables -L -v -n -x``)."""
    total, inside = 0, False
    for line in iptables.splitlines():
        if line.startswith("Chain "):
            inside = line.split()[1] == chain
        elif inside and line.split()[2:3] == ["DROP"]:
            total += int(line.split()[0])
    return total


@dataclasses.dataclass
class Split:
    """What the isolated master of the split brain did, and what the producer was told meanwhile.

    Counters are differences of the isolated master's INFO between the cut and just before the heal.
    """

    isolated_master: str
    majority_master: str
    probe: dict[str, Any]
    acked_at_cut: int
    acked_at_heal: int
    enqueue_scripts: int
    """EVAL/EVALSHA calls the isolated master ran (a redis_ha enqueue is one script, then WAIT)."""
    waits: int
    """WAIT calls it answered (none can have counted a replica: see the probe)."""
    worker_dequeues: int
    """BLMOVE calls it answered: jobs a worker may have taken from it."""
    writes_refused: int
    """NOREPLICAS replies (min-replicas-to-write) it gave, to any client."""
    unreplicated_bytes: int
    """Growth of its replication offset: writes it took that no replica received."""
    new_jobs: set[str]
    """Jobs it created during the split (the producer's enqueues that reached it)."""
    isolated_only_jobs: set[str]
    """Jobs it held and the new master did not, just before the heal."""
    acked_by_heal: set[str]
    """Jobs the producer had been told were safe just before the heal."""
    majority_jobs: set[str]
    dropped_in: int
    dropped_out: int
    isolated_master_healed: dict[str, str]
    """Its INFO replication once side_effect.yml saw it replicate again after the heal."""

    @property
    def acked_isolated_only(self) -> set[str]:
        return self.isolated_only_jobs & self.acked_by_heal

    def summary(self) -> str:
        p = self.probe
        acked_new = self.new_jobs & self.acked_by_heal
        return (
            f"partition split-brain: isolated={self.isolated_master} new_master={self.majority_master} "
            f"packets_dropped(in/out)={self.dropped_in}/{self.dropped_out} "
            f"app1_probe: reachable={p['reachable']}/{p['probes']} role_master={p['role_master']}/{p['probes']} "
            f"writes_accepted={p['accepted']} writes_refused={p['refused']} (first after {p['first_refused_s']}s) "
            f"replica_confirmed={p['confirmed']} | isolated_master_took: enqueue_scripts={self.enqueue_scripts} "
            f"WAITs={self.waits} worker_BLMOVEs={self.worker_dequeues} new_jobs={len(self.new_jobs)} "
            f"refused(NOREPLICAS)={self.writes_refused} unreplicated_bytes={self.unreplicated_bytes} | "
            f"of its new jobs: acked={len(acked_new)} (all re-sent to and confirmed on the new master: "
            f"{len(acked_new & self.majority_jobs)}) acked_only_there={len(self.acked_isolated_only)} | "
            f"producer acked during split={self.acked_at_heal - self.acked_at_cut}"
        )


@pytest.fixture(scope="module")
def drill(lab: Lab) -> Drill:
    return drill_summary(lab, "partition")


@pytest.fixture(scope="module")
def split(lab: Lab, drill: Drill) -> Split:
    path = _ephemeral() / SPLIT_FILE
    assert path.exists(), f"{path} is missing: did side_effect.yml run?"
    raw = json.loads(path.read_text())
    before, after = _info(raw["info_at_cut"]), _info(raw["info_at_heal"])
    at_cut, isolated, majority = (_job_ids(raw[k]) for k in ("jobs_at_cut", "isolated_jobs", "majority_jobs"))
    acked = str(lab.host("app1").file(f"{DRILL_DIR}/acked.log").content_string).split()
    result = Split(
        isolated_master=raw["isolated_master"],
        majority_master=raw["majority_master"],
        probe=raw["probe"],
        acked_at_cut=int(raw["acked_at_cut"]),
        acked_at_heal=int(raw["acked_at_heal"]),
        enqueue_scripts=sum(_delta(before, after, f"cmdstat_{cmd}", "calls") for cmd in ("eval", "evalsha")),
        waits=_delta(before, after, "cmdstat_wait", "calls"),
        worker_dequeues=_delta(before, after, "cmdstat_blmove", "calls"),
        writes_refused=_delta(before, after, "errorstat_NOREPLICAS", "count"),
        unreplicated_bytes=int(after["master_repl_offset"]) - int(before["master_repl_offset"]),
        new_jobs=isolated - at_cut,
        isolated_only_jobs=isolated - majority,
        acked_by_heal=set(acked[: int(raw["acked_at_heal"])]),
        majority_jobs=majority,
        dropped_in=_dropped(raw["iptables"], "RHK_SPLIT_IN"),
        dropped_out=_dropped(raw["iptables"], "RHK_SPLIT_OUT"),
        isolated_master_healed=_info(raw["isolated_master_healed"]),
    )
    # What the producer was told instead of an acknowledgement (a durable enqueue that no replica
    # confirmed within the retry deadline fails; it is not lost, the app knows it was not done).
    producer = json.loads(str(lab.host("app1").file(f"{DRILL_DIR}/producer.json").content_string))
    errors = "; ".join(" ".join(e.split())[:200] for e in producer["errors"][:3]) or "none"
    heal = []
    for what, key in (("isolated", "isolated_master"), ("cut", "cut_master")):
        info = _info(raw[f"{key}_healed"])
        address = raw["isolated_master"] if what == "isolated" else drill.masters["split"]
        heal.append(
            f"{address} ({what}) came back role={info.get('role')} of={info.get('master_host')} "
            f"link={info.get('master_link_status')} after {raw[f'{key}_heal_polls']} polls 1s apart"
        )
    now = []
    for step in ("before", "split"):
        address = drill.masters[step]
        name = next(host for host, ip in lab.ips.items() if ip == address)
        replication = lab.redis_client(name).info("replication")
        now.append(f"{address} role={replication['role']} of={replication.get('master_host', '-')}")
    lines = [
        result.summary(),
        f"partition producer errors ({producer['error_count']}): {errors}",
        "partition heals: " + "; ".join(heal) + f" | now (final master {drill.master_final}): " + "; ".join(now),
    ]
    print("\n".join(lines))
    with (_ephemeral() / "partition-summary.txt").open("a") as f:
        f.write("\n".join(lines) + "\n")
    return result


# --- the split brain -------------------------------------------------------------------------


@pytest.mark.units("redis-server")
def test_the_isolated_master_was_cut_off_from_its_peers_only(split: Split) -> None:
    # A real split brain: app1 reached it all along and it said master, while every packet to or
    # from the other Redis and Sentinel hosts was dropped.
    probe = split.probe
    assert probe["probes"] > 0, f"the probe on app1 never ran: {probe}"
    assert probe["reachable"] == probe["probes"], f"app1 could not always reach the isolated master: {probe}"
    assert probe["role_master"] == probe["probes"], f"the isolated master did not always claim ROLE master: {probe}"
    assert split.dropped_in > 0 and split.dropped_out > 0, "the iptables rules dropped nothing"


@pytest.mark.units("redis-sentinel")
def test_the_majority_elected_a_new_master(drill: Drill, split: Split) -> None:
    assert_master_moved(drill, "before", "split")
    assert split.isolated_master == drill.masters["before"]
    assert split.majority_master == drill.masters["split"]


@pytest.mark.units("redis-server")
def test_the_isolated_master_refused_writes_once_no_replica_kept_up(split: Split) -> None:
    # min-replicas-to-write: a client still writing to it gets NOREPLICAS, not a silent success.
    assert split.probe["refused"] > 0, f"the isolated master never refused a write: {split.probe}"
    assert split.writes_refused >= split.probe["refused"]


@pytest.mark.units("redis-server")
def test_no_replica_confirmed_a_write_to_the_isolated_master(split: Split) -> None:
    # WAIT is how a durable producer decides a write is safe: cut off, it must always get 0.
    assert split.probe["confirmed"] == 0, f"WAIT on the isolated master counted a replica: {split.probe}"


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_nothing_only_the_isolated_master_held_was_acknowledged(split: Split) -> None:
    assert split.acked_isolated_only == set(), (
        f"{len(split.acked_isolated_only)} jobs the producer was told were safe existed only on the isolated "
        "master just before the heal (its writes are discarded when it resyncs), e.g. "
        f"{sorted(split.acked_isolated_only)[:5]}"
    )


@pytest.mark.units("redis-server", "redis-sentinel")
def test_the_isolated_master_came_back_as_a_replica_of_the_new_one(split: Split) -> None:
    # Right after the heal (the full cut that follows may elect it master again).
    healed = split.isolated_master_healed
    assert healed.get("role") == "slave", healed
    assert healed.get("master_host") == split.majority_master, healed
    assert healed.get("master_link_status") == "up", healed


# --- the whole drill -------------------------------------------------------------------------


@pytest.mark.units("redis-sentinel")
def test_the_full_cut_moved_the_master_again(drill: Drill) -> None:
    assert_master_moved(drill, "split", "cut")


@pytest.mark.units("redis-server", "redis-sentinel")
def test_both_old_masters_came_back_as_replicas(lab: Lab, drill: Drill) -> None:
    for step in ("before", "split"):
        if drill.masters[step] != drill.master_final:
            assert_replica_of(lab, drill.masters[step], drill.master_final)


@pytest.mark.units(WORKER_UNIT, "redis-server", "redis-sentinel")
def test_no_acknowledged_job_is_lost(lab: Lab, drill: Drill) -> None:
    # What the isolated master accepted alone had no replica's confirmation (RQ_DURABLE=all waits
    # for it), so it was never acknowledged; the resync after the heal discards it.
    assert_no_acknowledged_job_lost(drill, lab)


@pytest.mark.units(WORKER_UNIT)
def test_the_worker_rode_through_without_restarting(drill: Drill) -> None:
    assert_worker_rode_through(drill)


@pytest.mark.units("redis-server", "redis-sentinel")
def test_every_sentinel_agrees_on_the_master_the_drill_ended_with(lab: Lab, drill: Drill) -> None:
    assert_cluster_agrees(lab, drill.master_final)
