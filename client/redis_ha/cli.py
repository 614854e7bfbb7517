"""``redis-ha``: run an RQ worker that rides through failover, check health, watch a failover.

  redis-ha worker [QUEUE ...] [--metrics-port P]   queues in priority order (default: default)
  redis-ha worker --processes N [QUEUE ...]        a pool of N worker processes (RQ's WorkerPool)
  redis-ha status [--json]                         exit 0 healthy, 1 degraded, 2 down
  redis-ha ping-loop [--interval S] [--duration D] ping the master, print a summary
  redis-ha drill run|traffic|report ...            failover drills (see redis_ha.drill.cli)

Settings come from the environment (REDIS_SENTINELS, REDIS_MASTER_NAME, REDIS_PASSWORD(_FILE),
RQ_* ...). A configuration error is printed plainly and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import TypeVar, cast

import redis

from redis_ha.client import HARedis
from redis_ha.config import Settings, format_address, load_settings
from redis_ha.errors import AuthError, ConfigError, describe_error
from redis_ha.health import EXIT_CODES, decide, health, observe
from redis_ha.outage import LOOP_SAY_AGAIN_S, Lines, Outage
from redis_ha.reconnect import until_it_answers

logger = logging.getLogger("redis_ha.cli")

EXIT_CONFIG = 2
PING_REPORT_INTERVAL_S = 30.0
DEFAULT_PING_INTERVAL_S = 1.0
DEFAULT_PING_DURATION_S = 60.0

T = TypeVar("T")


def _settings_and_rq() -> tuple[Settings, object]:
    """Both configurations at once, so every problem is reported in one go."""
    from redis_ha.rq.defaults import load_rq_settings  # noqa: PLC0415 - keeps `status` free of RQ imports

    problems: list[str] = []
    settings = rq_settings = None
    try:
        settings = load_settings()
    except ConfigError as exc:
        problems += exc.problems
    try:
        rq_settings = load_rq_settings()
    except ConfigError as exc:
        problems += exc.problems
    if problems:
        raise ConfigError(problems)
    assert settings is not None and rq_settings is not None
    return settings, rq_settings


def _when_redis_answers(step: Callable[[], T]) -> T:
    """Run ``step``, waiting out a Redis outage at boot like any other (not refused credentials)."""
    outage = Outage(
        logger,
        Lines(
            lost="Redis not reachable at start ({error}); retrying.",
            still="Redis still not reachable after {seconds:.0f}s ({error}); retrying.",
            back="Redis reachable after {seconds:.1f}s; starting.",
        ),
        say_again_s=LOOP_SAY_AGAIN_S,
    )
    value = until_it_answers(
        step,
        on_failure=lambda exc: outage.failed(describe_error(exc)),
        on_success=outage.recovered,
        retry_on=(redis.ConnectionError, redis.TimeoutError),
        giving_up=(AuthError,),
    )
    return cast(T, value)


def cmd_worker(args: argparse.Namespace) -> int:
    from redis_ha.metrics import WorkerMetrics  # noqa: PLC0415
    from redis_ha.rq.connection import RQRedis  # noqa: PLC0415
    from redis_ha.rq.worker import make_worker  # noqa: PLC0415

    settings, rq_settings = _settings_and_rq()
    if args.processes > 1 and args.name:
        print("redis-ha: --name names one worker; pool workers (--processes > 1) get random names", file=sys.stderr)
        return EXIT_CONFIG
    queues = args.queues or ["default"]
    if args.processes > 1:
        logger.info(
            "Starting a pool of %d RQ workers on queues %s (highest priority first).", args.processes, ", ".join(queues)
        )
    else:
        logger.info("Starting RQ worker on queues %s (highest priority first).", ", ".join(queues))
    logger.info("Redis: %s.", settings.describe())
    logger.info("Jobs: %s.", rq_settings.describe())  # type: ignore[attr-defined]
    connection = RQRedis(settings)
    metrics = None
    if args.metrics_port:
        metrics = WorkerMetrics()
        metrics.watch(connection, queues, getattr(rq_settings, "outbox_path", None))
        metrics.serve(args.metrics_port, args.metrics_addr)
    level = logging.getLevelName(logging.getLogger().level)
    if args.processes > 1:
        from redis_ha.rq.pool import HAWorkerPool  # noqa: PLC0415

        # Reaching Redis once also makes this process's connection follow failovers, which the
        # metrics report; the workers, each on a connection of its own, then start on a live master.
        _when_redis_answers(connection.ping)
        pool = HAWorkerPool(queues, connection, args.processes, metrics=metrics)
        pool.start(burst=args.burst, logging_level=level)
        logger.info("Worker pool stopped cleanly.")
        return 0
    worker = _when_redis_answers(lambda: make_worker(queues, connection, metrics=metrics, name=args.name))
    worker.work(burst=args.burst, logging_level=level, with_scheduler=True)
    done, failed = worker.outcome_counts
    logger.info("Worker stopped cleanly after %d job(s) done and %d failed.", done, failed)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.json:
        report = health(settings, args.queues or None)
        print(json.dumps(report, indent=2))
        return EXIT_CODES[report["state"]]
    obs = observe(settings, args.queues or None)
    state, reason = decide(obs)
    print(f"{state.upper()}: {reason}")
    print(f"master '{obs.master_name}': {format_address(obs.master) if obs.master else 'unreachable'}")
    for replica in obs.replicas:
        lag = "-" if replica.lag_s is None else f"{replica.lag_s}s"
        state_text = "online" if replica.online else "not online"
        behind = replica.sync.describe() if replica.sync else f"{replica.offset_behind} bytes behind"
        print(f"  replica {format_address(replica.address)}: {state_text}, lag {lag}, {behind}")
    for sentinel in obs.sentinels:
        if sentinel.reachable:
            extra = [f"failing over ({sentinel.failover_state})"] if sentinel.failover_state else []
            extra += [f"lists {entry} as down" for entry in sentinel.down_entries]
            print(f"  sentinel {format_address(sentinel.address)}: {'; '.join([sentinel.quorum_reply, *extra])}")
        else:
            print(f"  sentinel {format_address(sentinel.address)}: unreachable ({sentinel.error})")
    for name, depth in sorted(obs.queues.items()):
        print(f"  queue {name}: {depth} waiting")
    if obs.workers is not None:
        print(f"  workers: {obs.workers}")
    return EXIT_CODES[state]


def cmd_ping_loop(args: argparse.Namespace) -> int:
    settings = load_settings()
    client = HARedis(settings)
    latencies: list[float] = []
    failures = 0
    failovers = 0
    last_master = None
    started = time.monotonic()
    end = started + args.duration
    next_report = started + PING_REPORT_INTERVAL_S
    print(f"Pinging the master of '{settings.master_name}' every {args.interval:g}s for {args.duration:g}s.")
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            client.ping()
            latencies.append((time.monotonic() - t0) * 1000.0)
        except redis.RedisError as exc:
            failures += 1
            print(f"{time.strftime('%H:%M:%S')} ping failed: {str(exc).splitlines()[0]}")
        master = client.master_address
        if last_master is not None and master is not None and master != last_master:
            failovers += 1
            print(f"{time.strftime('%H:%M:%S')} master moved {format_address(last_master)} -> {format_address(master)}")
        last_master = master or last_master
        now = time.monotonic()
        if now >= next_report:
            next_report += PING_REPORT_INTERVAL_S
            print(
                f"{time.strftime('%H:%M:%S')} {len(latencies)} ok, {failures} failed, "
                f"master {format_address(last_master) if last_master else '-'}"
            )
        time.sleep(max(0.0, min(args.interval - (time.monotonic() - t0), end - time.monotonic())))
    total = len(latencies) + failures
    if latencies:
        lat = f"avg {statistics.fmean(latencies):.2f} ms, min {min(latencies):.2f} ms, max {max(latencies):.2f} ms"
    else:
        lat = "no successful ping"
    print(f"Summary: {total} pings, {failures} failed, latency {lat}, failovers seen {failovers}.")
    return 0 if failures == 0 else 1


def cmd_drill(args: argparse.Namespace) -> int:
    from redis_ha.drill.cli import main as drill_main  # noqa: PLC0415 - drills stay off the app's import path

    rest = args.drill_args[1:] if args.drill_args[:1] == ["--"] else args.drill_args
    return drill_main(rest)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="redis-ha", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    worker = sub.add_parser("worker", help="run an RQ worker (with scheduler) that rides through failover")
    worker.add_argument("queues", nargs="*", metavar="QUEUE", help="queues, highest priority first (default: default)")
    worker.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    worker.add_argument(
        "--metrics-addr",
        default=os.environ.get("REDIS_HA_METRICS_ADDR", "127.0.0.1"),
        help="address the metrics endpoint binds to (default 127.0.0.1, env REDIS_HA_METRICS_ADDR)",
    )
    worker.add_argument("--name", default=None, help="worker name (default: random)")
    worker.add_argument("--burst", action="store_true", help="stop once the queues are empty")
    worker.add_argument(
        "--processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="run N worker processes under one pool process (RQ's WorkerPool; default 1: a single worker)",
    )
    worker.set_defaults(func=cmd_worker)

    status = sub.add_parser("status", help="master, replicas, sentinels, quorum, queues; exit 0/1/2")
    status.add_argument("--json", action="store_true", help="print JSON (the same data as redis_ha.health())")
    status.add_argument("--queue", dest="queues", action="append", default=[], help="queue to report (repeatable)")
    status.set_defaults(func=cmd_status)

    ping = sub.add_parser("ping-loop", help="ping the master through Sentinel for a while; print a summary")
    ping.add_argument("--interval", type=_positive, default=DEFAULT_PING_INTERVAL_S, help="seconds between pings")
    ping.add_argument("--duration", type=_positive, default=DEFAULT_PING_DURATION_S, help="seconds to run")
    ping.set_defaults(func=cmd_ping_loop)

    drill = sub.add_parser("drill", help="failover drills: run, traffic, report", add_help=False)
    drill.add_argument("drill_args", nargs=argparse.REMAINDER, help="see `redis-ha drill --help`")
    drill.set_defaults(func=cmd_drill)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["drill"]:  # argparse's REMAINDER would swallow nothing before a leading option
        argv = ["drill", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"redis-ha: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AuthError as exc:
        print(f"redis-ha: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
