"""Split-brain probe of scenario partition: a client on app1 that still reaches the isolated master.

    python split_brain_probe.py DIR HOST [--port P] [--interval S] [--max-seconds S]

While side_effect.yml keeps the master cut off from the other Redis and Sentinel hosts (iptables
inside the master), this talks straight to HOST, the way a client that never asks Sentinel would:
every interval a new connection asks ROLE, writes one short-lived key, and asks ``WAIT 1`` whether
a replica confirmed it. Credentials are the app's (REDIS_USERNAME, REDIS_PASSWORD(_FILE)). One JSON line
per probe goes to DIR/split-probe.log; once DIR/split-probe.stop exists (or after --max-seconds)
DIR/split-probe.json sums them up: how often HOST answered and said master, how many writes it
accepted, how many it refused (NOREPLICAS: min-replicas-to-write) and how many a replica confirmed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import redis

KEY_PREFIX = "drill:split-probe:"
KEY_TTL_MS = 600_000
WAIT_TIMEOUT_MS = 100
SOCKET_TIMEOUT_S = 1.0


def app_password() -> str | None:
    """The app's password: REDIS_PASSWORD_FILE (the app hosts' .env points at a file), else REDIS_PASSWORD."""
    path = os.environ.get("REDIS_PASSWORD_FILE")
    if path:
        with open(path, encoding="utf-8") as file:
            return file.read().strip() or None
    return os.environ.get("REDIS_PASSWORD") or None


def probe(client: redis.Redis, n: int) -> dict[str, Any]:
    """One probe: ROLE, a write, WAIT 1. What each step answered."""
    result: dict[str, Any] = {"reachable": False, "role": None, "write": None, "confirmed": None}
    try:
        role = client.execute_command("ROLE")
    except redis.RedisError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    result["reachable"] = True
    result["role"] = str(role[0])
    try:
        client.set(f"{KEY_PREFIX}{n}", str(n), px=KEY_TTL_MS)
    except redis.ResponseError as exc:
        result["write"] = "refused" if str(exc).startswith("NOREPLICAS") else f"error: {exc}"
        return result
    except redis.RedisError as exc:
        result["write"] = f"error: {type(exc).__name__}: {exc}"
        return result
    result["write"] = "accepted"
    try:
        result["confirmed"] = int(client.execute_command("WAIT", 1, WAIT_TIMEOUT_MS))
    except redis.RedisError as exc:
        result["error"] = f"WAIT: {type(exc).__name__}: {exc}"
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("host")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--max-seconds", type=float, default=180.0)
    args = parser.parse_args()

    stop = args.dir / "split-probe.stop"
    counts = {"probes": 0, "reachable": 0, "role_master": 0, "accepted": 0, "refused": 0, "write_errors": 0}
    confirmed = 0
    first_refused_s: float | None = None
    last_accepted_s: float | None = None
    errors: list[str] = []
    started = time.monotonic()
    with (args.dir / "split-probe.log").open("a") as log:
        while not stop.exists() and time.monotonic() - started < args.max_seconds:
            n = counts["probes"]
            client = redis.Redis(
                args.host,
                args.port,
                username=os.environ.get("REDIS_USERNAME") or None,
                password=app_password(),
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
                decode_responses=True,
            )
            try:
                result = probe(client, n)
            finally:
                client.close()
            at = round(time.monotonic() - started, 3)
            counts["probes"] += 1
            counts["reachable"] += result["reachable"]
            counts["role_master"] += result["role"] == "master"
            if result["write"] == "accepted":
                counts["accepted"] += 1
                last_accepted_s = at
                confirmed += (result["confirmed"] or 0) > 0
            elif result["write"] == "refused":
                counts["refused"] += 1
                if first_refused_s is None:
                    first_refused_s = at
            elif result["write"] is not None:
                counts["write_errors"] += 1
            if "error" in result or str(result["write"]).startswith("error"):
                errors.append(result.get("error") or str(result["write"]))
            log.write(json.dumps({"n": n, "at_s": at, **result}) + "\n")
            log.flush()
            time.sleep(args.interval)
    summary = {
        **counts,
        "confirmed": confirmed,
        "first_refused_s": first_refused_s,
        "last_accepted_s": last_accepted_s,
        "duration_s": round(time.monotonic() - started, 3),
        "errors": errors[-10:],
    }
    (args.dir / "split-probe.json").write_text(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
