"""A lab-only webhook receiver: records every Alertmanager notification with the time it arrived.

POST (any path): the notification's JSON body is appended to RECORDS as one line
``{"received": <unix seconds>, "notification": {...}}``; with a token file, a request without
``Authorization: Bearer <token>`` gets 401 and is not recorded. GET: every record so far, as a JSON
list (what the drill and the Molecule checks read to tell when an alert was delivered).
Usage: alert_receiver.py ADDRESS PORT RECORDS [TOKEN_FILE]. Standard library only.
"""

from __future__ import annotations

import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY_BYTES = 1_000_000


def make_handler(records: Path, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received = time.time()
            if token is not None and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {token}"):
                self.send_error(401, "a bearer token is required")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY_BYTES:
                self.send_error(400, "a JSON body of at most 1 MB is required")
                return
            try:
                notification = json.loads(self.rfile.read(length))
            except ValueError:
                self.send_error(400, "the body is not JSON")
                return
            with records.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"received": received, "notification": notification}) + "\n")
            self.send_response(200)
            self.end_headers()

        def do_GET(self) -> None:
            text = records.read_text(encoding="utf-8") if records.exists() else ""
            body = json.dumps([json.loads(line) for line in text.splitlines() if line.strip()]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def main(argv: list[str]) -> None:
    address, port, records = argv[0], int(argv[1]), Path(argv[2])
    token = Path(argv[3]).read_text(encoding="utf-8").strip() if len(argv) > 3 else None
    ThreadingHTTPServer((address, port), make_handler(records, token)).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
