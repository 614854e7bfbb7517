"""Producer of the drills (scenarios failover, partition): durable enqueues through redis_ha.

    python drill_producer.py DIR [--max-seconds S] [--interval S]

Writes each acknowledged job id to DIR/acked.log (fsync'd: an id there is a job the app was told
is safe), stops when DIR/stop exists or after --max-seconds, then writes DIR/producer.json:
acknowledged, errors, and the longest gap between two acknowledgements (the write gap).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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

    queue = Queue("default")
    acked = 0
    errors: list[str] = []
    longest_gap_s = 0.0
    started = last_ack = time.monotonic()
    with (args.dir / "acked.log").open("a") as log:
        while not (args.dir / "stop").exists() and time.monotonic() - started < args.max_seconds:
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
    summary = {"acknowledged": acked, "errors": errors[-20:], "error_count": len(errors), "write_gap_s": longest_gap_s}
    (args.dir / "producer.json").write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
