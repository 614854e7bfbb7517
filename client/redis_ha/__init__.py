"""redis_ha — Redis through Sentinel, riding through failover.

from redis_ha import connect
r = connect()            # REDIS_SENTINELS, REDIS_MASTER_NAME, REDIS_PASSWORD ... from the environment
r.set("greeting", "hi")  # retried across a failover; RedisUnavailable only after the deadline

Where each idea lives, in the order a command takes them (one concern per module):

  client.py      ``connect()``/``HARedis``: a real ``redis.Redis``; commands and pipelines run in the retry loop
  commands.py    which commands may safely run twice, and how long a blocking one may wait
  retry.py       ``RetryLoop``: retry one operation until it succeeds, fails for good, or the deadline passes
  judgement.py   what an error means (did the command run? retry? whose mistake?), with a reason: the only place
  reconnect.py   the one reconnect policy: how long to wait before trying Redis again, for commands and loops
  outage.py      ``Outage``: whether something is failing right now, and one log line per change
  pool.py        ``HAConnectionPool``: hands out routes, drops every connection when the master moves
  connection.py  ``HAConnection``: goes where the pool says, confirms ``ROLE``, reports what it found
  topology.py    one per process and service, shared by every pool: where the master is (``decide_master``,
                 a pure function returning the address and why), its outage, the directory and the watcher
  sentinel.py    ``SentinelDirectory``: asking the sentinels, as the Sentinel client spec says
  watch.py       ``SwitchWatcher``: threads subscribed to ``+switch-master``
  promotion.py   recognising a replica promoted before Sentinel says so (replication history)
  errors.py      the exception tree;  config.py  settings, validated all at once;  health.py  ``redis-ha status``
  outbox.py      the on-disk outbox;  metrics.py  Prometheus;  cli.py  ``redis-ha``;  drill/  failover drills

  rq/            RQ on top: connection.py (clones stay Sentinel-aware), defaults.py (``RQ_*``), enqueue.py (the
                 idempotent enqueue script), flusher.py (sends the outbox), queue.py (``Queue``), dequeue.py
                 (LMOVE into the intermediate list), scheduler.py, worker.py (``HAWorker``), orphans.py (jobs
                 a failover orphaned), pool.py (``HAWorkerPool``)
"""

from redis_ha.client import HARedis, configured, connect
from redis_ha.config import Settings, load_settings
from redis_ha.errors import (
    AuthError,
    CommandOutcomeUnknown,
    ConfigError,
    NotDurable,
    RedisHAError,
    RedisUnavailable,
)
from redis_ha.health import health

__all__ = [
    "AuthError",
    "CommandOutcomeUnknown",
    "ConfigError",
    "HARedis",
    "NotDurable",
    "RedisHAError",
    "RedisUnavailable",
    "Settings",
    "configured",
    "connect",
    "health",
    "load_settings",
]
