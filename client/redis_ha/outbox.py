"""A local on-disk outbox for jobs that could not reach Redis, kept in SQLite (WAL, synchronous=FULL).

An entry is written in one transaction before ``enqueue`` returns, so it survives a crash of
the process (and of the machine, once the call returned). Entries are read back in the order
they were added and deleted only after Redis accepted them; the job id is unique in the table
and is what the enqueue script deduplicates on, so a flush interrupted between "Redis took it"
and "row deleted" sends it again harmlessly instead of creating a second job.

The file holds job arguments, which may be secrets: it is created 0600 (SQLite gives its -wal and
-shm files the same mode) in a directory created 0700. A directory that already exists is left
as its owner set it, with a warning if group or others may enter it.

Several processes may share one outbox; ``draining()`` lets one of them at a time send it, so a
job is sent once (and a re-send after a crash is a no-op in Redis anyway).

This module only stores; ``redis_ha.rq.queue`` decides when to use it and flushes it.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import fcntl
import json
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
FILE_MODE = 0o600
"""Mode of a new outbox file (and of its lock file)."""
DIRECTORY_MODE = 0o700
"""Mode of an outbox directory this module creates."""
DRAIN_LOCK_POLL_S = 0.05
"""How often ``draining(wait_s)`` tries again for the lock another process holds, seconds."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    at_front INTEGER NOT NULL DEFAULT 0,
    ttl INTEGER,
    mapping TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class OutboxEntry:
    """One job waiting to be sent: what the enqueue script needs, nothing more."""

    job_id: str
    queue: str
    mapping: Mapping[str, Any]
    at_front: bool = False
    ttl: int | None = None
    seq: int = 0
    created_at: float = 0.0


def _encode(mapping: Mapping[str, Any]) -> str:
    out: dict[str, list[Any]] = {}
    for key, given in mapping.items():
        value = given.value if isinstance(given, enum.Enum) else given  # e.g. RQ's JobStatus
        if isinstance(value, bytes):
            out[key] = ["b", base64.b64encode(value).decode("ascii")]
        elif isinstance(value, bool | int):
            out[key] = ["i", int(value)]
        elif isinstance(value, float):
            out[key] = ["f", value]
        else:
            out[key] = ["s", str(value)]
    return json.dumps(out, separators=(",", ":"))


def _decode(text: str) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, (kind, value) in json.loads(text).items():
        decoded[key] = base64.b64decode(value) if kind == "b" else value
    return decoded


class Outbox:
    """A FIFO of jobs on disk. Safe to share between threads; each process opens its own handle."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()  # one drain per process; the file lock is for other processes
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._connection()  # fail early on an unusable path

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            _private_directory(self.path.parent)
            _private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def add(self, entry: OutboxEntry) -> bool:
        """Store one job; False if a job with that id is already waiting (nothing is stored twice)."""
        with self._lock:
            cursor = self._connection().execute(
                "INSERT OR IGNORE INTO outbox (job_id, queue, at_front, ttl, mapping, created_at) VALUES (?,?,?,?,?,?)",
                (entry.job_id, entry.queue, int(entry.at_front), entry.ttl, _encode(entry.mapping), time.time()),
            )
            return cursor.rowcount == 1

    def peek(self, limit: int = 100) -> list[OutboxEntry]:
        """The oldest ``limit`` entries, oldest first."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT seq, job_id, queue, at_front, ttl, mapping, created_at FROM outbox ORDER BY seq LIMIT ?",
                    (limit,),
                )
                .fetchall()
            )
        return [
            OutboxEntry(
                job_id=job_id,
                queue=queue,
                mapping=_decode(mapping),
                at_front=bool(at_front),
                ttl=ttl,
                seq=seq,
                created_at=created_at,
            )
            for seq, job_id, queue, at_front, ttl, mapping, created_at in rows
        ]

    def remove(self, seqs: list[int]) -> None:
        """Delete entries Redis has accepted."""
        if not seqs:
            return
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def has_entries(self) -> bool:
        """True when any job waits, from this process or another (one indexed read: cheap to poll)."""
        with self._lock:
            row = self._connection().execute("SELECT 1 FROM outbox LIMIT 1").fetchone()
        return row is not None

    @contextlib.contextmanager
    def draining(self, wait_s: float = 0.0) -> Iterator[bool]:
        """Hold the right to send this outbox (True), or learn within ``wait_s`` that another thread
        or process holds it (False). A process that dies lets go of it with its file descriptors."""
        deadline = time.monotonic() + wait_s
        if not self._drain_lock.acquire(timeout=max(wait_s, 0.0)):
            yield False
            return
        try:
            lock_path = self.path.with_name(self.path.name + ".drain-lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            yield False
                            return
                        time.sleep(DRAIN_LOCK_POLL_S)
                        continue
                    break
                try:
                    yield True
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            self._drain_lock.release()

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._connection().execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _private_directory(directory: Path) -> None:
    """Create ``directory`` (and missing parents) 0700; warn if an existing one is open to others."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            new.mkdir(mode=DIRECTORY_MODE)
    if missing:
        return
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        _warn_once(
            directory,
            f"Outbox directory {directory} is open to group or others (mode {mode:04o}); the jobs stored "
            "there may carry secrets: make it 0700 (chmod 700), or set RQ_OUTBOX_PATH to a private directory.",
        )


def _private_file(path: Path) -> None:
    """Create the outbox file 0600 before SQLite does (SQLite would use 0644 less the umask)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            _warn_once(path, f"Outbox file {path} is readable by group or others (mode {mode:04o}); chmod 600 it.")
        return
    os.close(fd)


_warned: set[str] = set()


def _warn_once(path: Path, message: str) -> None:
    if str(path) not in _warned:
        _warned.add(str(path))
        logger.warning(message)
