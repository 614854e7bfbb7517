"""What an app's credentials must not be able to do to Redis and Sentinel, probed without harm.

Each forbidden action is sent with arguments that would change nothing even if the server
accepted it (a master name that does not exist, an option Redis does not know, a syntax error
after the permission check), so a probe of a cluster that is shared with others is never
destructive. Sentinel's hello channel is never published to: any hello message, even with epoch
0, adds a phantom Sentinel to every Sentinel's table. Permission on it is checked with SUBSCRIBE.

``allowed_forbidden_actions`` returns what was accepted; an empty list is the only good answer.
Give it RESP2 clients: over RESP3 an accepted SUBSCRIBE or MONITOR answers with push messages,
which a plain ``execute_command`` waits behind forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis

HELLO_CHANNEL = "__sentinel__:hello"
NO_SUCH_MASTER = "redis-ha-probe-no-such-master"
NO_SUCH_USER = "redis-ha-probe-no-such-user"

# (what an operator would call it, the command as sent)
REDIS_FORBIDDEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("subscribe to Sentinel's hello channel", ("SUBSCRIBE", HELLO_CHANNEL)),
    ("flush every database", ("FLUSHALL", "REDIS-HA-PROBE-SYNTAX-ERROR")),
    ("change the config", ("CONFIG", "SET", "redis-ha-probe-no-such-option", "x")),
    ("read the config (masterauth)", ("CONFIG", "GET", "masterauth")),
    ("make the node a replica", ("REPLICAOF", "192.0.2.1", "not-a-port")),
    ("shut the node down", ("SHUTDOWN", "ABORT")),
    ("run DEBUG", ("DEBUG", "SLEEP", "0")),
    ("change ACL users", ("ACL", "DELUSER", NO_SUCH_USER)),
    ("kill other clients", ("CLIENT", "KILL", "ID", "0")),
    ("list every client", ("CLIENT", "LIST")),
    ("scan the keyspace with KEYS", ("KEYS", "redis-ha-probe-no-such-key:*")),
    ("flush the scripts", ("SCRIPT", "FLUSH", "REDIS-HA-PROBE-SYNTAX-ERROR")),
    ("watch every command (MONITOR)", ("MONITOR",)),
)

SENTINEL_FORBIDDEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("publish on Sentinel (hello messages)", ("PUBLISH", "redis-ha-probe", "x")),
    ("subscribe to Sentinel's hello channel", ("SUBSCRIBE", HELLO_CHANNEL)),
    ("change a master's settings", ("SENTINEL", "SET", NO_SUCH_MASTER, "quorum", "2")),
    ("monitor another master", ("SENTINEL", "MONITOR", NO_SUCH_MASTER, "192.0.2.1", "not-a-port", "2")),
    ("stop monitoring a master", ("SENTINEL", "REMOVE", NO_SUCH_MASTER)),
    ("force a failover", ("SENTINEL", "FAILOVER", NO_SUCH_MASTER)),
    ("reset Sentinel's tables", ("SENTINEL", "RESET", NO_SUCH_MASTER)),
    ("change Sentinel's config", ("SENTINEL", "CONFIG", "SET", "redis-ha-probe-no-such-option", "x")),
    ("rewrite Sentinel's config file", ("SENTINEL", "FLUSHCONFIG")),
    ("vote in a failover", ("SENTINEL", "IS-MASTER-DOWN-BY-ADDR", "192.0.2.1", "0", "0", "*")),
    ("read Sentinel's debug settings", ("SENTINEL", "DEBUG")),
    ("simulate a failure", ("SENTINEL", "SIMULATE-FAILURE", "HELP")),
    ("change ACL users", ("ACL", "DELUSER", NO_SUCH_USER)),
    ("shut Sentinel down", ("SHUTDOWN", "ABORT")),
    ("kill other clients", ("CLIENT", "KILL", "ID", "0")),
)


def refused(error: redis.RedisError) -> bool:
    """A permission refusal (NOPERM), or DEBUG refused by enable-debug-command before the ACL check."""
    text = str(error)
    return isinstance(error, redis.exceptions.NoPermissionError) or "no permissions" in text or "not allowed" in text


def _probe(connect: Callable[[], redis.Redis], command: Sequence[str]) -> str | None:
    """None if the server refused ``command``; otherwise what it answered. One connection per probe."""
    client = connect()
    try:
        reply = client.execute_command(*command)
    except redis.ResponseError as error:
        return None if refused(error) else f"answered {str(error).splitlines()[0]!r}"
    finally:
        client.close()  # also ends a SUBSCRIBE or MONITOR the server accepted
    return f"answered {reply!r}"


def allowed_forbidden_actions(
    redis_connect: Callable[[], redis.Redis], sentinel_connect: Callable[[], redis.Redis]
) -> list[str]:
    """Every forbidden action the given credentials could take, as 'Redis: what (COMMAND): answer'."""
    allowed = []
    for where, connect, actions in (
        ("Redis", redis_connect, REDIS_FORBIDDEN),
        ("Sentinel", sentinel_connect, SENTINEL_FORBIDDEN),
    ):
        for what, command in actions:
            answer = _probe(connect, command)
            if answer is not None:
                allowed.append(f"{where}: {what} ({' '.join(command[:2])}): {answer}")
    return allowed


def forbidden_action_count() -> int:
    return len(REDIS_FORBIDDEN) + len(SENTINEL_FORBIDDEN)
