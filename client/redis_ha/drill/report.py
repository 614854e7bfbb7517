"""What users felt during a drill, and whether it met the SLO. Pure functions over the records.

``summarize()`` turns the recorded traffic and events into a ``Summary``; ``verdict()`` compares
it with an ``Slo`` and returns one sentence per miss (an empty list: the SLO was met);
``table()`` and ``to_json()`` present both. Nothing here touches a socket or a file.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis_ha.drill.records import CONTROLLER, DrillLog, Event, Probe, TrafficRecord

GAP_SLACK_S = 2.0
"""The default write-gap SLO is Sentinel's ``down-after-milliseconds`` plus this, seconds."""
FALLBACK_DOWN_AFTER_MS = 30_000
"""Sentinel's own default ``down-after-milliseconds``, used when the cluster's could not be read."""
SHOWN_IDS = 5
"""How many job ids a verdict sentence names before it says "and N more"."""
STEPS_AFTER_GAP_S = 10.0
"""Sentinel steps heard this long after the longest write gap ended still belong to its failover."""

# Event names the orchestrator records (and the timeline draws).
BREAK = "break"
BROKEN = "broken"
"""The break took effect: the backend's call returned (an Ansible run takes seconds before its last task)."""
BREAK_FAILED = "break-failed"
FAILOVER_DONE = "failover-done"
RESTORE = "restore"
RESTORED = "restored"
RESTORE_FAILED = "restore-failed"
RECOVERED = "recovered"
NOT_RECOVERED = "not-recovered"
INTERRUPTED = "interrupted"
ALERT_FIRING = "alert-firing"
ALERT_DELIVERED = "alert-delivered"
"""The failover alert's notification reached the webhook receiver."""
TRAFFIC_LOST = "traffic-lost"
"""Stopping the traffic, or bringing its records back from the app host, failed."""

STEPS: tuple[tuple[str, str, str], ...] = (
    # (channel, what the message must start with, the name the report gives the step)
    ("+sdown", "master ", "sdown"),
    ("+odown", "master ", "odown"),
    ("+failover-state-send-slaveof-noone", "slave ", "promotion sent"),
    ("+promoted-slave", "slave ", "promotion seen"),
    ("+switch-master", "", "switch-master"),
)
"""The failover's steps in the report, in the order Sentinel takes them."""


@dataclass(frozen=True)
class Slo:
    """What a drill must stay within. ``max_write_gap_s`` None: down-after-milliseconds + 2 s."""

    max_lost: int = 0
    max_errors: int = 0
    max_write_gap_s: float | None = None

    def write_gap_limit(self, down_after_ms: int | None) -> tuple[float, str]:
        """The write-gap limit in seconds and where it comes from."""
        if self.max_write_gap_s is not None:
            return self.max_write_gap_s, "as configured"
        ms = down_after_ms if down_after_ms is not None else FALLBACK_DOWN_AFTER_MS
        source = "Sentinel's" if down_after_ms is not None else "Sentinel's default"
        return ms / 1000.0 + GAP_SLACK_S, f"{source} down-after-milliseconds {ms} ms + {GAP_SLACK_S:g} s"


@dataclass(frozen=True)
class Summary:
    kind: str
    env: str
    backend: str
    traffic_s: float
    acknowledged: int
    finished: int
    lost: int
    lost_ids: tuple[str, ...]
    duplicated: int
    ran_without_ack: int
    errors: int
    errors_by_type: dict[str, int]
    first_errors: tuple[str, ...]
    write_gap_s: float
    write_gaps: tuple[tuple[float, float], ...]
    max_enqueue_latency_s: float
    worker_restarts: int
    drained: bool
    down_after_ms: int | None
    failover_s: float | None
    recovered_s: float | None
    restored: bool | None
    restore_detail: str
    break_failed: str
    interrupted: str
    alert_s: float | None
    alert_note: str
    acks_before_break: int
    events: tuple[Event, ...] = field(default=())
    traffic_on: str = CONTROLLER
    failover_steps: tuple[tuple[str, float], ...] = ()
    """Steps of the failover as Sentinel announced them, and the first write after the longest write
    gap, in seconds since ``steps_from``."""
    steps_from: str = ""
    steps_origin: float | None = None
    """The time ``failover_steps`` count from (``steps_from`` says what happened then)."""
    traffic_problem: str = ""
    delivered_s: float | None = None
    delivery_note: str = ""


def write_gaps(probes: list[Probe], threshold_s: float) -> list[tuple[float, float]]:
    """Spans between two consecutive successful probe writes that lasted longer than ``threshold_s``.

    A failed or slow write is what a user feels, so the span runs from one success's answer to
    the next success's answer. Writes still failing at the end give a span to the last probe.
    """
    spans = []
    last_ok: float | None = None
    ordered = sorted(probes, key=lambda p: p.done)
    for probe in ordered:
        if not probe.ok:
            continue
        if last_ok is not None and probe.done - last_ok > threshold_s:
            spans.append((last_ok, probe.done))
        last_ok = probe.done
    if ordered and last_ok is not None and not ordered[-1].ok and ordered[-1].done - last_ok > threshold_s:
        spans.append((last_ok, ordered[-1].done))
    if ordered and last_ok is None:
        spans.append((ordered[0].sent, ordered[-1].done))
    return spans


def failover_steps(events: Iterable[Event], since: float) -> list[tuple[str, float]]:
    """The first time each step of ``STEPS`` was heard at or after ``since``, as (step, seconds since). Pure.

    A step never heard is left out; the result is in the order of ``STEPS``.
    """
    ordered = sorted(events, key=lambda e: e.at)
    found = []
    for channel, prefix, name in STEPS:
        for event in ordered:
            data = event.detail.partition(" ")[2]
            if event.name == channel and event.at >= since and data.startswith(prefix):
                found.append((name, round(event.at - since, 3)))
                break
    return found


def _first(events: list[Event], name: str, after: float = -math.inf) -> Event | None:
    return next((e for e in sorted(events, key=lambda e: e.at) if e.name == name and e.at >= after), None)


def _ids(ids: list[str]) -> str:
    shown = ", ".join(ids[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def summarize(traffic: TrafficRecord, log: DrillLog) -> Summary:
    """Everything the report says, computed from what was recorded."""
    events = sorted([*log.events, *traffic.events], key=lambda e: e.at)
    acked = {a.job_id for a in traffic.acks}
    runs = Counter(e.job_id for e in traffic.executions)
    lost_ids = sorted(acked - set(runs))
    errors_by_type = Counter(e.error.split(":", 1)[0] for e in traffic.errors)
    gaps = write_gaps(traffic.probes, threshold_s=max(0.5, 3 * traffic.probe_interval_s))
    ok_spans = sorted(p.done for p in traffic.probes if p.ok)
    longest = max((b - a for a, b in itertools.pairwise(ok_spans)), default=0.0)
    longest = max([longest, *(b - a for a, b in gaps)])
    # Times are counted from when the break took effect, else from when the drill started it.
    broke = _first(events, BROKEN) or _first(events, BREAK)
    t0 = broke.at if broke else None
    failover = _first(events, FAILOVER_DONE)
    recovered = _first(events, RECOVERED)
    restored = _first(events, RESTORED)
    restore_failed = _first(events, RESTORE_FAILED)
    restore_outcome = restore_failed or restored
    alert = _first(events, ALERT_FIRING)
    delivered = _first(events, ALERT_DELIVERED)
    steps, steps_from, steps_origin = _steps(log, gaps, t0)
    break_failed = _first(events, BREAK_FAILED)
    interrupted = _first(events, INTERRUPTED)
    traffic_lost = _first(events, TRAFFIC_LOST)
    return Summary(
        kind=log.kind,
        env=log.env,
        backend=log.backend,
        traffic_s=round(traffic.ended - traffic.started, 3),
        acknowledged=len(acked),
        finished=len(acked & set(runs)),
        lost=len(lost_ids),
        lost_ids=tuple(lost_ids),
        duplicated=sum(1 for count in runs.values() if count > 1),
        ran_without_ack=len(set(runs) - acked),
        errors=len(traffic.errors),
        errors_by_type=dict(errors_by_type),
        first_errors=tuple(e.error for e in traffic.errors[:3]),
        write_gap_s=round(longest, 3),
        write_gaps=tuple((round(a, 3), round(b, 3)) for a, b in gaps),
        max_enqueue_latency_s=round(max((a.acked - a.submitted for a in traffic.acks), default=0.0), 3),
        worker_restarts=traffic.worker_restarts,
        drained=traffic.drained,
        down_after_ms=log.down_after_ms,
        failover_s=round(failover.at - t0, 3) if failover and t0 is not None else None,
        recovered_s=round(recovered.at - t0, 3) if recovered and t0 is not None else None,
        restored=None if restored is None and restore_failed is None else restore_failed is None,
        restore_detail=restore_outcome.detail if restore_outcome else "",
        break_failed=break_failed.detail if break_failed else "",
        interrupted=interrupted.detail if interrupted else "",
        alert_s=round(alert.at - t0, 3) if alert and t0 is not None else None,
        alert_note=log.alert_note,
        acks_before_break=sum(1 for a in traffic.acks if t0 is None or a.acked < t0),
        events=tuple(events),
        traffic_on=log.traffic_on,
        failover_steps=tuple(steps),
        steps_from=steps_from,
        steps_origin=steps_origin,
        traffic_problem=traffic_lost.detail if traffic_lost else "",
        delivered_s=round(delivered.at - t0, 3) if delivered and t0 is not None else None,
        delivery_note=log.delivery_note,
    )


def _steps(
    log: DrillLog, gaps: list[tuple[float, float]], t0: float | None
) -> tuple[list[tuple[str, float]], str, float | None]:
    """Where the longest write gap went: Sentinel's steps and the first write, from the gap's start.

    Without a write gap (a drill that causes no failover, or one clients did not feel) the steps
    are counted from the break, and there is no "first write". Returns the steps, what they count
    from, and when that was.
    """
    if gaps:
        start, end = max(gaps, key=lambda g: g[1] - g[0])
        steps = [s for s in failover_steps(log.sentinel_events, start) if s[1] <= end - start + STEPS_AFTER_GAP_S]
        steps.append(("first write", round(end - start, 3)))
        return sorted(steps, key=lambda s: s[1]), "the last write", start
    if t0 is None or not log.sentinel_events:
        return [], "", None
    return failover_steps(log.sentinel_events, t0), "the break", t0


def verdict(summary: Summary, slo: Slo) -> list[str]:
    """One sentence per way the drill missed its SLO or proved nothing; empty when it passed."""
    reasons = []
    if summary.lost > slo.max_lost:
        reasons.append(
            f"{summary.lost} acknowledged job(s) never ran (SLO: at most {slo.max_lost} lost): "
            f"{_ids(list(summary.lost_ids))}"
        )
    if summary.errors > slo.max_errors:
        kinds = ", ".join(f"{count} {name}" for name, count in sorted(summary.errors_by_type.items()))
        reasons.append(
            f"{summary.errors} error(s) surfaced to producers (SLO: at most {slo.max_errors}): {kinds}; "
            f"first: {summary.first_errors[0] if summary.first_errors else '-'}"
        )
    limit, source = slo.write_gap_limit(summary.down_after_ms)
    if summary.write_gap_s > limit:
        reasons.append(f"no write got through for {summary.write_gap_s:.1f} s (SLO: at most {limit:.1f} s, {source})")
    if summary.restored is False:
        reasons.append(f"the drill could not restore what it broke: {summary.restore_detail}")
    if summary.recovered_s is None:
        reasons.append("the cluster was not seen healthy again (old master a replica in sync, quorum ok)")
    if summary.acks_before_break == 0:
        reasons.append("no job was acknowledged before the break, so the drill measured nothing")
    if summary.break_failed:
        reasons.append(f"the break itself failed: {summary.break_failed}")
    if summary.interrupted:
        reasons.append(f"the drill was interrupted ({summary.interrupted})")
    if summary.traffic_problem:
        reasons.append(
            f"the traffic on {summary.traffic_on} could not be stopped or collected: {summary.traffic_problem}"
        )
    return reasons


def _seconds(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.1f} s"


def rows(summary: Summary, slo: Slo) -> list[tuple[str, str]]:
    """The report as (what, value) pairs, in the order a person reads them."""
    limit, _ = slo.write_gap_limit(summary.down_after_ms)
    restored = {None: "-", True: "yes", False: "NO"}[summary.restored]
    if summary.restore_detail:
        restored += f" ({summary.restore_detail})"
    return [
        ("drill", f"{summary.kind} on {summary.env} ({summary.backend} backend)"),
        ("seconds without a writable master", f"{summary.write_gap_s:.1f} s (SLO <= {limit:.1f} s)"),
        ("errors surfaced to producers", f"{summary.errors} (SLO <= {slo.max_errors})"),
        ("jobs acknowledged", str(summary.acknowledged)),
        ("jobs finished", str(summary.finished)),
        ("jobs lost", f"{summary.lost} (SLO <= {slo.max_lost})"),
        ("jobs run more than once", str(summary.duplicated)),
        ("jobs run without an acknowledgement", str(summary.ran_without_ack)),
        ("slowest acknowledged enqueue", f"{summary.max_enqueue_latency_s:.2f} s"),
        ("worker restarts", str(summary.worker_restarts)),
        ("failover done (sentinels agree)", _seconds(summary.failover_s, "no failover") + " after the break"),
        ("healthy again (old master a replica)", _seconds(summary.recovered_s, "not seen") + " after the break"),
        ("restored what it broke", restored),
        *alert_rows(summary.alert_s, summary.alert_note, summary.delivered_s, summary.delivery_note),
        (f"failover steps (s after {summary.steps_from or 'the break'})", _steps_text(summary.failover_steps)),
        ("traffic ran", f"{summary.traffic_s:.1f} s on {summary.traffic_on}"),
    ]


def alert_rows(
    fired_s: float | None, fired_note: str, delivered_s: float | None, delivery_note: str
) -> list[tuple[str, str]]:
    """The report's alert rows: seconds after the break, or why there is no number."""

    def after_break(value: float | None, note: str) -> str:
        return f"{value:.1f} s after the break" if value is not None else note or "-"

    return [
        ("alert fired", after_break(fired_s, fired_note)),
        ("alert delivered", after_break(delivered_s, delivery_note)),
    ]


def _steps_text(steps: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{name} {at:.1f}" for name, at in steps) or "-"


def table(summary: Summary, slo: Slo, reasons: list[str], extra: list[tuple[str, str]] | None = None) -> str:
    """A plain-text table (the drill kind's ``extra`` rows last) and the verdict, for a terminal or a ticket."""
    pairs = rows(summary, slo) + (extra or [])
    width = max(len(k) for k, _ in pairs)
    lines = [f"{k.ljust(width)}  {v}" for k, v in pairs]
    rule = "-" * (width + 2 + max(len(v) for _, v in pairs))
    verdict_line = "SLO met." if not reasons else "SLO MISSED:\n" + "\n".join(f"  - {r}" for r in reasons)
    return "\n".join([rule, *lines, rule, verdict_line])


def to_json(summary: Summary, slo: Slo, reasons: list[str]) -> dict[str, Any]:
    """The report as JSON-ready data: the summary, the SLO applied and the verdict."""
    data = asdict(summary)
    data["events"] = [asdict(e) for e in summary.events]
    limit, source = slo.write_gap_limit(summary.down_after_ms)
    return {
        "summary": data,
        "slo": {"max_lost": slo.max_lost, "max_errors": slo.max_errors, "max_write_gap_s": limit, "source": source},
        "slo_met": not reasons,
        "reasons": reasons,
    }


def throughput(traffic: TrafficRecord) -> list[tuple[int, int, int, int]]:
    """Per second since the traffic started: (second, enqueues acknowledged, jobs run, producer errors)."""
    seconds = max(1, math.ceil(traffic.ended - traffic.started))
    acks = [0] * seconds
    runs = [0] * seconds
    errors = [0] * seconds

    def bucket(at: float) -> int:
        return min(seconds - 1, max(0, int(at - traffic.started)))

    for a in traffic.acks:
        acks[bucket(a.acked)] += 1
    for e in traffic.executions:
        runs[bucket(e.at)] += 1
    for err in traffic.errors:
        errors[bucket(err.at)] += 1
    return [(i, acks[i], runs[i], errors[i]) for i in range(seconds)]
