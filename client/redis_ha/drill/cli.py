"""``redis-ha drill``: failover drills.

redis-ha drill run --kind KIND [--env ENV] [--out DIR]   break, restore, report (exit 1: SLO missed)
    [--traffic-on controller|app|HOST]                    where the traffic runs (default: here)
redis-ha drill traffic --out DIR --queue Q [--rate R]    the traffic alone (on an app host)
redis-ha drill report DIR                                 render DIR's records again
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from redis_ha.drill import kinds, report, traffic
from redis_ha.drill.records import CONTROLLER

REPO_ROOT_ENV = "REDIS_HA_KIT_ROOT"


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def cmd_traffic(args: argparse.Namespace) -> int:
    options = traffic.TrafficOptions(
        out_dir=Path(args.out),
        queue=args.queue,
        rate=args.rate,
        duration_s=args.duration,
        workers=args.workers,
        producers=args.producers,
        drain_timeout_s=args.drain_timeout,
        probe_interval_s=args.probe_interval,
    )
    generator = traffic.Traffic(options)

    def finish(_signum: int, _frame: FrameType | None) -> None:
        generator.request_finish()

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    record = generator.run()
    return 0 if record.drained else 1


def _slo(args: argparse.Namespace) -> report.Slo:
    return report.Slo(max_lost=args.max_lost, max_errors=args.max_errors, max_write_gap_s=args.max_write_gap)


def cmd_run(args: argparse.Namespace) -> int:
    from redis_ha.drill.hosts import AppHostTraffic, HostsBackend, app_host_from, find_repo_root  # noqa: PLC0415
    from redis_ha.drill.orchestrator import DrillOptions, TrafficRunner, run_drill  # noqa: PLC0415

    root = find_repo_root(os.environ.get(REPO_ROOT_ENV))
    out = Path(args.out) if args.out else root / ".drills" / f"{time.strftime('%Y%m%d-%H%M%S')}-{args.env}-{args.kind}"
    options = DrillOptions(
        kind=args.kind,
        env=args.env,
        out_dir=out,
        confirm=args.confirm if args.confirm is not None else os.environ.get("CONFIRM"),
        rate=args.rate,
        workers=args.workers,
        warmup_s=args.warmup,
        hold_s=args.hold,
        settle_s=args.settle,
        alert_wait_s=args.alert_wait,
        slo=_slo(args),
    )
    backend = HostsBackend(args.env, root)
    traffic: TrafficRunner | None = None
    if args.traffic_on != CONTROLLER:
        try:
            host = app_host_from(backend.inventory, args.traffic_on)
        except ValueError as exc:
            raise SystemExit(f"redis-ha drill: {exc}") from None
        traffic = AppHostTraffic(backend, host, options)
    # The drill looks at the cluster four times a second with a fresh client, each saying it
    # connected; keep the topology's warnings (lost the master, failover seen) and drop that chatter.
    logging.getLogger("redis_ha.topology").setLevel(logging.WARNING)
    return run_drill(backend, options, traffic).code


def cmd_report(args: argparse.Namespace) -> int:
    from redis_ha.drill.orchestrator import render  # noqa: PLC0415

    return render(Path(args.dir), _slo(args), png=not args.no_png).code


def _slo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-lost", type=int, default=0, help="acknowledged jobs allowed to be lost (default 0)")
    parser.add_argument("--max-errors", type=int, default=0, help="errors allowed to reach producers (default 0)")
    parser.add_argument(
        "--max-write-gap",
        type=_positive,
        default=None,
        help="seconds without a successful write allowed (default: down-after-milliseconds + 2 s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redis-ha drill", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="drill_command", required=True)

    run = sub.add_parser("run", help="break the cluster while jobs flow, restore it, report what users felt")
    run.add_argument("--kind", required=True, choices=list(kinds.KINDS), help="what to break")
    run.add_argument("--env", default="lab", help="inventory under ansible/inventories (default: lab)")
    run.add_argument("--out", default=None, help="results directory (default: .drills/<time>-<env>-<kind>)")
    run.add_argument("--confirm", default=None, help="'yes' to drill production (or CONFIRM=yes)")
    run.add_argument("--rate", type=_positive, default=traffic.DEFAULT_RATE_PER_S, help="jobs enqueued per second")
    run.add_argument("--workers", type=int, default=traffic.DEFAULT_WORKERS, help="worker processes")
    run.add_argument("--warmup", type=float, default=5.0, help="seconds of traffic before the break")
    run.add_argument("--hold", type=float, default=5.0, help="seconds the breakage lasts after the failover")
    run.add_argument("--settle", type=float, default=5.0, help="seconds of traffic after recovery")
    run.add_argument("--alert-wait", type=float, default=120.0, help="seconds to wait for the failover alert")
    run.add_argument(
        "--traffic-on",
        default=CONTROLLER,
        metavar="controller|app|HOST",
        help="run the traffic here (controller, the default), on the inventory's first app host (app) "
        "or on the named app host, from the app's virtualenv (deployed by ansible/app.yml)",
    )
    _slo_arguments(run)
    run.set_defaults(func=cmd_run)

    gen = sub.add_parser("traffic", help="enqueue durably at a set rate, run workers, record everything")
    gen.add_argument("--out", required=True, help="directory for traffic.json and the workers' logs")
    gen.add_argument("--queue", default="drill", help="queue name (use one of its own)")
    gen.add_argument("--rate", type=_positive, default=traffic.DEFAULT_RATE_PER_S, help="jobs per second")
    gen.add_argument("--duration", type=_positive, default=traffic.DEFAULT_DURATION_S, help="longest run, seconds")
    gen.add_argument("--workers", type=int, default=traffic.DEFAULT_WORKERS, help="worker processes")
    gen.add_argument("--producers", type=int, default=traffic.DEFAULT_PRODUCERS, help="producer threads")
    gen.add_argument("--drain-timeout", type=_positive, default=traffic.DEFAULT_DRAIN_TIMEOUT_S, help="seconds")
    gen.add_argument("--probe-interval", type=_positive, default=traffic.DEFAULT_PROBE_INTERVAL_S, help="seconds")
    gen.set_defaults(func=cmd_traffic)

    rep = sub.add_parser("report", help="render a results directory again (table, JSON, PNG)")
    rep.add_argument("dir", help="results directory of an earlier drill")
    rep.add_argument("--no-png", action="store_true", help="skip the PNG")
    _slo_arguments(rep)
    rep.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    code: int = args.func(args)
    return code
