"""Which commands may safely run twice, and which ones block.

A command that never reached a server (the connection could not be made, or the server
rejected it with READONLY, NOREPLICAS, MASTERDOWN, LOADING or UNBLOCKED) is always
retried: it did not run. A command whose connection broke *after* it was sent may or
may not have run. Such a command is retried only when running it twice leaves the same
result as running it once — the commands listed in ``NOT_SAFE_TO_REPEAT`` are not, and
raise ``CommandOutcomeUnknown`` instead (unless ``retry_unsafe_commands=True``).

Commands that may run twice after a lost reply, by design: reads; SET and other
overwrites; DEL/UNLINK; EXPIRE family; SADD/SREM/ZADD/ZREM/HSET/HDEL and friends;
pops, blocking or not (LPOP, LMOVE, BLPOP, BLMOVE, ...) — an element whose pop reply
was lost is lost whether or not we retry, and the retry only takes the next element. Transactions (MULTI/EXEC)
and pipelines are retried only when every command inside is safe to repeat.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

# Commands whose second run changes the data again (counters, appends, pushes,
# scripts whose effect is unknown, messages that would be delivered twice).
NOT_SAFE_TO_REPEAT = frozenset(
    {
        "INCR",
        "INCRBY",
        "INCRBYFLOAT",
        "DECR",
        "DECRBY",
        "HINCRBY",
        "HINCRBYFLOAT",
        "ZINCRBY",
        "APPEND",
        "SETRANGE",
        "SETBIT",
        "BITFIELD",
        "LPUSH",
        "RPUSH",
        "LPUSHX",
        "RPUSHX",
        "LINSERT",
        "XADD",
        "XACK",
        "XCLAIM",
        "XAUTOCLAIM",
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
        "PUBLISH",
        "SPUBLISH",
        "GETDEL",
        "GETSET",
        "GETEX",
        "COPY",
        "RENAME",
        "RENAMENX",
        "MOVE",
        "SMOVE",
        "RESTORE",
        "SORT",
        "MIGRATE",
    }
)

# Blocking commands and how to find their timeout argument (seconds, 0 = forever).
_LAST_ARG_TIMEOUT = frozenset({"BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX"})
_FIRST_ARG_TIMEOUT = frozenset({"BLMPOP", "BZMPOP"})


def command_name(args: Sequence[Any]) -> str:
    first = args[0]
    name = first.decode() if isinstance(first, bytes) else str(first)
    return name.split(" ", 1)[0].upper()


def safe_to_repeat(names: Iterable[str]) -> bool:
    """True when every command may run twice without changing the outcome."""
    return not any(name in NOT_SAFE_TO_REPEAT for name in names)


_BLOCKING = _LAST_ARG_TIMEOUT | _FIRST_ARG_TIMEOUT | {"XREAD", "XREADGROUP", "WAIT", "WAITAOF"}
_NOT_BLOCKING_HINT = frozenset(
    {
        "GET",
        "SET",
        "MGET",
        "MSET",
        "DEL",
        "EXISTS",
        "EXPIRE",
        "HGET",
        "HSET",
        "HGETALL",
        "HMGET",
        "INCR",
        "INCRBY",
        "LPUSH",
        "RPUSH",
        "LRANGE",
        "LLEN",
        "ZADD",
        "ZRANGE",
        "SADD",
        "SMEMBERS",
        "PING",
        "EVALSHA",
        "EVAL",
        "TTL",
        "PEXPIRE",
    }
)


def block_seconds(args: Sequence[Any]) -> float | None:
    """How long a blocking command may legitimately wait for its reply; None if it does not block.

    ``0.0`` means "forever" (a blocking pop with timeout 0).
    """
    first = args[0]
    # Fast path: redis-py names commands in upper case; most are not blocking.
    if first in _NOT_BLOCKING_HINT:
        return None
    name = command_name(args)
    if name not in _BLOCKING:
        return None
    try:
        if name in _LAST_ARG_TIMEOUT:
            return float(args[-1])
        if name in _FIRST_ARG_TIMEOUT:
            return float(args[1])
        if name in ("XREAD", "XREADGROUP"):
            block_ms = _stream_block_ms(args)
            return None if block_ms is None else block_ms / 1000.0
        if name in ("WAIT", "WAITAOF"):
            return float(args[-1]) / 1000.0
    except (ValueError, IndexError, TypeError):
        return None
    return None


def _word(arg: Any) -> str:
    """An argument as an upper-case word: redis-py sends its options as bytes (b"BLOCK"), callers may use str."""
    if isinstance(arg, bytes):
        return arg.decode("latin-1").upper()
    return arg.upper() if isinstance(arg, str) else ""


def _stream_block_ms(args: Sequence[Any]) -> float | None:
    """The BLOCK milliseconds of XREAD/XREADGROUP, read from the options before STREAMS (whose keys and
    ids, like a group or consumer name, may be any word, "block" included)."""
    # XREAD [COUNT n] [BLOCK ms] STREAMS ...; XREADGROUP GROUP g c [COUNT n] [BLOCK ms] [NOACK] STREAMS ...
    index = 1
    while index < len(args):
        word = _word(args[index])
        if word == "STREAMS":
            return None
        if word == "BLOCK":
            return float(args[index + 1])
        index += {"GROUP": 3, "COUNT": 2}.get(word, 1)
    return None


def read_timeout_for(block_s: float, socket_timeout_s: float) -> float | None:
    """A blocking command may wait its own timeout plus the usual socket timeout (None: forever)."""
    return None if block_s == 0 else block_s + socket_timeout_s
