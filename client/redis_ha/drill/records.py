"""What a drill recorded, and its JSON form. Times are wall-clock seconds (``time.time()``).

The traffic generator writes ``traffic.json``; the orchestrator writes ``events.json`` (what it
did and when) next to it. Both sides of a drill run on machines whose clocks agree (NTP), which
is what lets the report put them on one timeline.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

TRAFFIC_FILE = "traffic.json"
EVENTS_FILE = "events.json"
EXECUTIONS_FILE = "executions.log"
READY_FILE = "ready"
CONTROLLER = "controller"
"""Where the traffic ran when it ran beside the orchestrator (``DrillLog.traffic_on``)."""
RECORDS_MAX_BYTES = 256 * 1024 * 1024
"""The most an app host's records archive may unpack to; a drill's are a few MB."""


@dataclass(frozen=True)
class Ack:
    """An enqueue the producer saw succeed: submitted at ``submitted``, acknowledged at ``acked``."""

    job_id: str
    submitted: float
    acked: float


@dataclass(frozen=True)
class ProducerError:
    """An exception an enqueue raised to the producer (what an application would have seen)."""

    at: float
    job_id: str
    error: str


@dataclass(frozen=True)
class Execution:
    """One run of a drill job by a worker process."""

    job_id: str
    at: float
    pid: int


@dataclass(frozen=True)
class Probe:
    """One write (SET) by the probe: sent at ``sent``, answered or failed at ``done``."""

    sent: float
    done: float
    ok: bool
    master: str = ""
    error: str = ""


@dataclass(frozen=True)
class Event:
    """Something the orchestrator or the traffic generator did or saw (``name``: see orchestrator)."""

    at: float
    name: str
    detail: str = ""


@dataclass
class TrafficRecord:
    started: float
    ended: float
    rate: float
    queue: str
    probe_interval_s: float
    acks: list[Ack] = field(default_factory=list)
    errors: list[ProducerError] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    worker_restarts: int = 0
    drained: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrafficRecord:
        return cls(
            started=float(data["started"]),
            ended=float(data["ended"]),
            rate=float(data["rate"]),
            queue=str(data["queue"]),
            probe_interval_s=float(data["probe_interval_s"]),
            acks=[Ack(**a) for a in data.get("acks", [])],
            errors=[ProducerError(**e) for e in data.get("errors", [])],
            executions=[Execution(**e) for e in data.get("executions", [])],
            probes=[Probe(**p) for p in data.get("probes", [])],
            events=[Event(**e) for e in data.get("events", [])],
            worker_restarts=int(data.get("worker_restarts", 0)),
            drained=bool(data.get("drained", True)),
        )


@dataclass
class DrillLog:
    """What the orchestrator knows: the drill, the cluster's settings and its own events."""

    kind: str
    env: str
    backend: str
    down_after_ms: int | None = None
    events: list[Event] = field(default_factory=list)
    alert_note: str = ""
    """Why no alert line is drawn (no monitoring host configured, Prometheus unreachable ...)."""
    delivery_note: str = ""
    """Why no delivery time is known (no webhook receiver to read, the alert never arrived ...)."""
    traffic_on: str = CONTROLLER
    """Where the traffic generator ran: ``controller`` or the inventory name of an app host."""
    sentinel_events: list[Event] = field(default_factory=list)
    """What the Sentinels announced about the master during the drill (``+sdown``, ``+odown``,
    ``+switch-master`` ...), as heard: ``name`` is the channel, ``detail`` the sentinel and message."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DrillLog:
        return cls(
            kind=str(data["kind"]),
            env=str(data["env"]),
            backend=str(data["backend"]),
            down_after_ms=data.get("down_after_ms"),
            events=[Event(**e) for e in data.get("events", [])],
            alert_note=str(data.get("alert_note", "")),
            delivery_note=str(data.get("delivery_note", "")),
            traffic_on=str(data.get("traffic_on", CONTROLLER)),
            sentinel_events=[Event(**e) for e in data.get("sentinel_events", [])],
        )


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a half-written results file is worse than none)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_executions(path: Path) -> list[Execution]:
    """The executions recorded in ``path`` (see ``parse_executions``); none if it does not exist."""
    try:
        return parse_executions(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


def parse_executions(text: str) -> list[Execution]:
    """Parse the workers' ``<job id> <time> <pid>`` lines (``redis_ha.drill.jobs.record``); a torn
    last line is skipped."""
    executions = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            executions.append(Execution(parts[0], float(parts[1]), int(parts[2])))
        except ValueError:
            continue
    return executions


def unpack_records(archive: Path, out_dir: Path, *, reserved: frozenset[str] = frozenset({EVENTS_FILE})) -> list[str]:
    """Unpack the records an app host's traffic left (a ``tar -C DIR -czf ARCHIVE .``) into ``out_dir``.

    Accepts only regular files directly in the archive's top directory (``./traffic.json``, ...) and
    refuses the whole archive, writing nothing, if a member is anything else: a path with a
    directory part or ``..``, an absolute path, a link or device, one of the ``reserved`` names
    the orchestrator writes itself, or more than ``RECORDS_MAX_BYTES`` in all. Returns the names
    written, sorted.
    """
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        files: list[tuple[str, tarfile.TarInfo]] = []
        total = 0
        for member in members:
            path = PurePosixPath(member.name)
            parts = [part for part in path.parts if part != "."]
            if member.isdir() and not parts:
                continue  # the archive's own top directory
            if path.is_absolute() or len(parts) != 1 or parts[0] == ".." or not member.isfile():
                raise ValueError(f"{archive.name}: refusing member {member.name!r} (only plain files at the top)")
            if parts[0] in reserved:
                raise ValueError(f"{archive.name}: refusing member {member.name!r}: the drill writes that file itself")
            total += member.size
            if total > RECORDS_MAX_BYTES:
                raise ValueError(f"{archive.name}: more than {RECORDS_MAX_BYTES} bytes of records; refusing it")
            files.append((parts[0], member))
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, member in files:
            source = tar.extractfile(member)
            assert source is not None  # a regular file
            tmp = out_dir / f".{name}.unpacking"
            with source, tmp.open("wb") as target:
                shutil.copyfileobj(source, target)
            tmp.replace(out_dir / name)
    return sorted(name for name, _ in files)
