"""The drill's timeline as a PNG: throughput, errors, enqueue latency, write gaps, the drill's events
and the failover's steps as the Sentinels announced them.

The only module that imports matplotlib (Agg backend, no display needed).
"""

from __future__ import annotations

from pathlib import Path

from redis_ha.drill import report
from redis_ha.drill.records import TrafficRecord

EVENT_STYLE: dict[str, tuple[str, str]] = {
    report.BREAK: ("tab:pink", "break started"),
    report.BROKEN: ("tab:red", "broken (failover start)"),
    report.FAILOVER_DONE: ("tab:green", "failover done"),
    report.RESTORED: ("tab:blue", "restored"),
    report.RESTORE_FAILED: ("black", "RESTORE FAILED"),
    report.RECOVERED: ("tab:purple", "healthy again (old master a replica)"),
    report.ALERT_FIRING: ("tab:orange", "alert fired"),
    report.INTERRUPTED: ("black", "interrupted"),
}


def render_png(
    path: Path, traffic: TrafficRecord, summary: report.Summary, slo: report.Slo, reasons: list[str]
) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    t0 = traffic.started
    series = report.throughput(traffic)
    seconds = [s + 0.5 for s, _, _, _ in series]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=[3, 2])
    top.plot(seconds, [a for _, a, _, _ in series], label="enqueues acknowledged /s", color="tab:blue")
    top.plot(seconds, [r for _, _, r, _ in series], label="jobs run /s", color="tab:green", linestyle="--")
    top.bar(seconds, [e for _, _, _, e in series], width=0.9, color="tab:red", alpha=0.7, label="producer errors /s")
    top.set_ylabel("per second")
    top.grid(alpha=0.3)

    acks = sorted(traffic.acks, key=lambda a: a.submitted)
    bottom.scatter(
        [a.submitted - t0 for a in acks], [a.acked - a.submitted for a in acks], s=6, color="tab:blue",
        label="enqueue latency (s)",
    )  # fmt: skip
    failed = [p for p in traffic.probes if not p.ok]
    if failed:
        bottom.scatter([p.done - t0 for p in failed], [0] * len(failed), s=10, marker="x", color="tab:red",
                       label="probe write failed")  # fmt: skip
    bottom.set_ylabel("seconds")
    bottom.set_xlabel("seconds since the traffic started")
    bottom.grid(alpha=0.3)

    for axis in (top, bottom):
        for i, (a, b) in enumerate(summary.write_gaps):
            axis.axvspan(a - t0, b - t0, color="tab:red", alpha=0.12, label="no write got through" if i == 0 else None)
    seen: set[str] = set()
    for event in summary.events:
        if event.name not in EVENT_STYLE:
            continue
        color, label = EVENT_STYLE[event.name]
        for axis in (top, bottom):
            axis.axvline(event.at - t0, color=color, linestyle=":", linewidth=1.5,
                         label=label if axis is top and event.name not in seen else None)  # fmt: skip
        seen.add(event.name)
    if summary.steps_origin is not None and summary.failover_steps:
        for name, offset in summary.failover_steps:
            if name != "first write":
                bottom.axvline(summary.steps_origin + offset - t0, color="dimgray", linewidth=0.6, alpha=0.6)
        steps = ", ".join(f"{name} {offset:.1f}" for name, offset in summary.failover_steps)
        bottom.text(0.01, 0.95, f"failover steps (gray lines), s after {summary.steps_from}: {steps}",
                    transform=bottom.transAxes, va="top", fontsize=8, color="dimgray")  # fmt: skip
    if summary.alert_s is None:
        note = f"alert line: {summary.alert_note or 'not read'}"
        top.text(0.01, 0.97, note, transform=top.transAxes, va="top", fontsize=9, color="dimgray")
    top.legend(loc="upper right", fontsize=8)
    bottom.legend(loc="upper right", fontsize=8)

    limit, _ = slo.write_gap_limit(summary.down_after_ms)
    verdict = "SLO met" if not reasons else f"SLO MISSED ({len(reasons)} reason(s))"
    fig.suptitle(
        f"{summary.kind} on {summary.env}: {summary.write_gap_s:.1f} s without writes (limit {limit:.1f} s), "
        f"{summary.errors} errors, {summary.lost} lost, {summary.duplicated} run twice of {summary.acknowledged} "
        f"acknowledged - {verdict}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
