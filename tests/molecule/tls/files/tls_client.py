"""The app's redis_ha client on app1, over TLS (scenario tls; tests/test_tls.py copies and runs it).

Runs as the app's service user with the app's .env (REDIS_TLS=1, REDIS_TLS_*_FILE), as the worker
unit does, and prints one JSON line:

    python tls_client.py once KEY VALUE
        SET then GET KEY through Sentinel: {"read", "master", "tls"}
    python tls_client.py loop DIR SECONDS
        one client writes a counter until DIR/stop exists or SECONDS passed (a failover happens
        meanwhile), then writes DIR/writer.json: {"writes", "errors", "masters", "last_key"}
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import redis
import redis_ha
from redis_ha.config import format_address


def once(key: str, value: str) -> dict[str, object]:
    client = redis_ha.connect()
    client.set(key, value)
    read = client.get(key)
    master = client.master_address
    return {
        "read": read.decode() if isinstance(read, bytes) else read,
        "master": format_address(master) if master else None,
        "tls": client.settings.tls,
    }


def loop(directory: Path, seconds: float) -> dict[str, object]:
    client = redis_ha.connect()
    writes = 0
    errors: list[str] = []
    masters: list[str] = []
    last_key = ""
    deadline = time.monotonic() + seconds
    while not (directory / "stop").exists() and time.monotonic() < deadline:
        key = f"tls:writer:{writes}"
        try:
            client.set(key, str(writes))
        except redis.RedisError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            time.sleep(0.1)
            continue
        last_key = key
        writes += 1
        master = client.master_address
        if master is not None and (not masters or masters[-1] != format_address(master)):
            masters.append(format_address(master))
        time.sleep(0.05)
    result: dict[str, object] = {"writes": writes, "errors": errors[-20:], "masters": masters, "last_key": last_key}
    (directory / "writer.json").write_text(json.dumps(result) + "\n")
    return result


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "once":
        print(json.dumps(once(argv[1], argv[2])))
        return 0
    if len(argv) == 3 and argv[0] == "loop":
        print(json.dumps(loop(Path(argv[1]), float(argv[2]))))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
