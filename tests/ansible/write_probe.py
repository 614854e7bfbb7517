"""Write through redis_ha in a loop while a rolling restart runs; report errors and lost writes.

Used to check that a restart rolled by the redis role (replicas first, the master failed
over with writes paused) is invisible to a client:

    set -a; . .deploy/lab/redis-ha.env; set +a
    .venv/bin/python tests/ansible/write_probe.py --duration 240 --stop-file /tmp/probe.stop &
    .venv/bin/ansible-playbook ... ansible/upgrade.yml -e redis_force_restart=true; touch /tmp/probe.stop

Every write is a SET of a new key; at the end every acknowledged key is read back from
the master of the moment. Exit status 0 only when no write raised and none was lost.
Bounded: it stops after --duration seconds even without the stop file.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import redis_ha

DEFAULT_DURATION_S = 180.0
DEFAULT_INTERVAL_S = 0.02
KEY_TTL_S = 3600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds to write at most")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S, help="seconds between writes")
    parser.add_argument("--stop-file", type=Path, help="stop as soon as this file exists")
    args = parser.parse_args(argv)

    client = redis_ha.connect()
    run = uuid.uuid4().hex[:8]
    acknowledged: list[int] = []
    errors: list[str] = []
    masters: list[tuple[str, int] | None] = []
    slowest_s = 0.0
    deadline = time.monotonic() + args.duration
    index = 0
    while time.monotonic() < deadline and not (args.stop_file and args.stop_file.exists()):
        started = time.monotonic()
        try:
            client.set(f"probe:{run}:{index}", index, ex=KEY_TTL_S)
        except Exception as exc:  # any error a caller would see is what we count
            errors.append(f"write {index}: {type(exc).__name__}: {exc}")
        else:
            acknowledged.append(index)
        slowest_s = max(slowest_s, time.monotonic() - started)
        if not masters or masters[-1] != client.master_address:
            masters.append(client.master_address)
            print(f"write {index}: master is {client.master_address}", flush=True)
        index += 1
        time.sleep(args.interval)

    keys = [f"probe:{run}:{i}" for i in acknowledged]
    stored = [value for chunk in range(0, len(keys), 500) for value in client.mget(keys[chunk : chunk + 500])]
    lost = [i for i, value in zip(acknowledged, stored, strict=True) if value is None]
    print(
        f"{index} writes, {len(acknowledged)} acknowledged, {len(errors)} error(s), {len(lost)} acknowledged "
        f"write(s) lost; slowest write {slowest_s:.2f} s; masters in turn: {masters}"
    )
    for line in errors[:20]:
        print(f"  error: {line}")
    if lost:
        print(f"  lost: {lost[:20]}")
    return 0 if not errors and not lost else 1


if __name__ == "__main__":
    sys.exit(main())
