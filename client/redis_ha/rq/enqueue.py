"""The idempotent enqueue: one Lua script per job, run through the HA retry loop (and ``WAIT``).

Stock RQ enqueues with a pipeline holding HSET, EXPIRE, RPUSH and SADD. If the connection
breaks after sending it, nobody knows whether the RPUSH ran, and repeating it may queue the
job twice, so redis_ha refuses to repeat it (``CommandOutcomeUnknown``). Here the job id is
fixed before the first attempt and the whole enqueue is one Lua script that does nothing if
the job was already enqueued. Running it twice therefore has the effect of running it once,
and the retry loop may repeat it across a failover.

"Already enqueued" means: the job hash exists, or the job's dedup marker does. The script
writes the marker (``redis-ha:rq:enqueued:<job id>``, a few dozen bytes, TTL
``RQ_ENQUEUE_DEDUP_TTL``, default 24 h) with the job, so an enqueue retried or re-sent from the
outbox after the job ran and its hash expired (``result_ttl``) does not run the job again.

Durable mode adds ``WAIT`` after the script: the enqueue returns only once enough replicas
confirm it, else it is retried (on the new master after a failover) until the deadline, then
``NotDurable`` is raised. When the job already exists the script still makes one small write,
so ``WAIT`` covers the earlier attempt's writes as well.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import rq
from redis.client import Pipeline
from rq.job import Job

from redis_ha.client import HARedis
from redis_ha.config import Address, format_address
from redis_ha.errors import NotDurable
from redis_ha.outbox import OutboxEntry
from redis_ha.rq.defaults import DEFAULT_ENQUEUE_DEDUP_TTL_S, DURABLE_ALL

REPLICA_COUNT_CACHE_S = 2.0
"""How long the number of healthy replicas (for ``durable="all"``) is reused, seconds."""
ACK_MARKER_KEY = "redis-ha:rq:enqueue-ack"
ACK_MARKER_TTL_MS = 60_000
DEDUP_MARKER_PREFIX = "redis-ha:rq:enqueued:"
"""``<prefix><job id>`` says the job was enqueued, for ``RQ_ENQUEUE_DEDUP_TTL`` seconds."""

# KEYS: job hash, queue list, RQ's set of queues, ack marker, dedup marker.
# ARGV: job id, at_front (1/0), ttl seconds ("" = none), dedup marker TTL seconds (0 = no
# marker), then the job hash as field, value, ...
# The marker is set first (SET NX: also the check); the EXISTS covers jobs enqueued without one.
ENQUEUE_SCRIPT = """
local dedup_ttl = tonumber(ARGV[4])
if (dedup_ttl > 0 and not redis.call('SET', KEYS[5], KEYS[2], 'NX', 'EX', dedup_ttl))
    or redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('SET', KEYS[4], ARGV[1], 'PX', ACK_TTL_MS)
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
local ttl = tonumber(ARGV[3])
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
if ARGV[2] == '1' then redis.call('LPUSH', KEYS[2], ARGV[1]) else redis.call('RPUSH', KEYS[2], ARGV[1]) end
redis.call('SADD', KEYS[3], KEYS[2])
return 1
""".replace("ACK_TTL_MS", str(ACK_MARKER_TTL_MS))


def streaming_replicas(info: Mapping[str, Any]) -> int:
    """Replicas a master's ``INFO replication`` lists as online (past their initial sync)."""
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave")
        and key[5:].isdigit()
        and isinstance(value, Mapping)
        and value.get("state") == "online"
    )


class Enqueuer:
    """Runs the idempotent enqueue script (and ``WAIT``) through the HA retry loop."""

    def __init__(self, connection: HARedis, dedup_ttl_s: int = DEFAULT_ENQUEUE_DEDUP_TTL_S) -> None:
        self.connection = connection
        self.dedup_ttl_s = dedup_ttl_s
        self.script = connection.register_script(ENQUEUE_SCRIPT)
        self._replicas: tuple[float, Address | None, int] = (0.0, None, 0)  # when, for which master, count

    def healthy_replicas(self) -> int:
        """Replicas that must confirm a write: the larger of Sentinel's healthy ones and those
        streaming from the master we write to (cached briefly, for that master).

        Sentinel's count alone fails when the Sentinel that answers is cut off with the old master
        (it sees no healthy replica while the new master has them); the master's count alone is
        unsafe in a planned failover (the replica being promoted has already left the old master,
        so WAIT for the rest acknowledges writes that are resynced away). A Sentinel that already
        names another master lists that one's replicas, possibly fewer than still stream from the
        node we write to: that node is being replaced, so nothing written there counts (NotDurable,
        retried on the new master). Asking for more confirmations than needed only costs a retry."""
        fetched_at, counted_for, count = self._replicas
        writing_to = self.connection.ha_pool.current_master
        if counted_for == writing_to and time.monotonic() - fetched_at < REPLICA_COUNT_CACHE_S:
            return count
        streaming = streaming_replicas(self.connection.info("replication"))
        writing_to = self.connection.ha_pool.current_master  # the node that INFO came from
        directory = self.connection.ha_pool.topology.directory
        seen = directory.master_and_healthy_replicas() if directory is not None else None
        if seen is not None and seen[0] != writing_to:
            raise NotDurable(
                f"Sentinel names {format_address(seen[0])} the master while this client writes to "
                f"{format_address(writing_to) if writing_to else 'another node'}: a failover is under way, "
                "and writes to the old master may be resynced away"
            )
        count = max(len(seen[1]) if seen is not None else 0, streaming)
        self._replicas = (time.monotonic(), writing_to, count)
        return count

    def send(self, entries: Sequence[OutboxEntry], replicas: int = 0, timeout_ms: int = 1000) -> list[int]:
        """Enqueue every entry (1 = created, 0 = was already there), confirmed by ``replicas`` replicas."""
        conn = self.connection

        def attempt() -> list[int]:
            wanted = self.healthy_replicas() if replicas == DURABLE_ALL else replicas
            if replicas and wanted < 1:
                raise NotDurable(
                    "durable enqueue needs at least one healthy replica; neither Sentinel nor the master reports one"
                )
            try:
                results = self._run(entries, wanted, timeout_ms, load=False)
            except redis.exceptions.NoScriptError:
                results = self._run(entries, wanted, timeout_ms, load=True)
            if replicas:
                *results, confirmed = results
                if int(confirmed) < wanted:
                    raise NotDurable(
                        f"enqueue of {len(entries)} job(s) reached the master but only {confirmed} of {wanted} "
                        f"replicas confirmed it within {timeout_ms} ms"
                    )
            return [int(r) for r in results]

        return conn.retry_loop.run(attempt, [("EVALSHA",)], safe=True)

    def _run(self, entries: Sequence[OutboxEntry], replicas: int, timeout_ms: int, *, load: bool) -> list[Any]:
        # A plain pipeline: the HA retry loop around it (in send) is the only one.
        pipe = Pipeline(self.connection.connection_pool, self.connection.response_callbacks, False, None)
        wait_s = timeout_ms / 1000.0
        if replicas and wait_s >= self.connection.settings.socket_timeout_s * 0.8:
            # WAIT may block longer than a normal reply takes: give this connection the time.
            conn: Any = self.connection.connection_pool.get_connection()
            pipe.connection = conn
            conn.set_read_timeout(wait_s + self.connection.settings.socket_timeout_s)
            try:
                return self._fill_and_run(pipe, entries, replicas, timeout_ms, load=load)
            finally:
                conn.restore_read_timeout()
        return self._fill_and_run(pipe, entries, replicas, timeout_ms, load=load)

    def _fill_and_run(
        self, pipe: Pipeline, entries: Sequence[OutboxEntry], replicas: int, timeout_ms: int, *, load: bool
    ) -> list[Any]:
        if load:
            pipe.script_load(ENQUEUE_SCRIPT)
        for entry in entries:
            job_key = Job.key_for(entry.job_id)
            queue_key = rq.Queue.redis_queue_namespace_prefix + entry.queue
            args: list[Any] = [
                entry.job_id,
                "1" if entry.at_front else "0",
                "" if entry.ttl is None else entry.ttl,
                self.dedup_ttl_s,
            ]
            for field, value in entry.mapping.items():
                args += [field, value]
            keys = (job_key, queue_key, rq.Queue.redis_queues_keys, ACK_MARKER_KEY, DEDUP_MARKER_PREFIX + entry.job_id)
            pipe.evalsha(self.script.sha, len(keys), *keys, *args)
        if replicas:
            pipe.execute_command("WAIT", replicas, timeout_ms)
        results = pipe.execute()
        return results[1:] if load else results
