"""Producer of the drills (scenarios failover, partition): durable enqueues through redis_ha.

    python drill_producer.py DIR [--max-seconds S] [--interval S]

Writes each acknowledged job id to DIR/acked.log (fsync'd: an id there is a job the app was told
is safe), stops when DIR/stop exists, after --max-seconds or on SIGTERM, then writes
DIR/producer.json: acknowledged, errors, and the longest gap between two acknowledgements (the
write gap). A producer restarted in the same DIR (as make tls-switch restarts the apps) adds its
figures to the ones its predecessor wrote, the gap across the restart included.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from redis_ha.errors import RedisHAError
from redis_ha.rq import Queue

JOB = "redis_ha.drill.jobs.record"  # appends <job id> <time> <pid> to the file it is given


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    summary_path = args.dir / "producer.json"
    before = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    queue = Queue("default")
    acked = 0
    errors: list[str] = []
    # A predecessor's last acknowledgement starts the clock: the restart is part of the gap.
    longest_gap_s = float(before.get("write_gap_s", 0.0))
    started = time.monotonic()
    last_ack = started - max(0.0, time.time() - float(before.get("last_ack_at", time.time())))
    with (args.dir / "acked.log").open("a") as log:
        while (
            not stopping.is_set() and not (args.dir / "stop").exists() and time.monotonic() - started < args.max_seconds
        ):
            try:
                job = queue.enqueue(JOB, str(args.dir / "executions.log"))  # by name: the worker has redis_ha
            except RedisHAError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            now = time.monotonic()
            longest_gap_s = max(longest_gap_s, now - last_ack)
            last_ack = now
            log.write(f"{job.id}\n")
            log.flush()
            os.fsync(log.fileno())
            acked += 1
            time.sleep(args.interval)
    summary = {
        "acknowledged": acked + int(before.get("acknowledged", 0)),
        "errors": (list(before.get("errors", [])) + errors)[-20:],
        "error_count": len(errors) + int(before.get("error_count", 0)),
        "write_gap_s": longest_gap_s,
        "last_ack_at": time.time() - (time.monotonic() - last_ack),
        "runs": int(before.get("runs", 0)) + 1,
    }
    summary_path.write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
