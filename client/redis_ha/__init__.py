"""redis_ha — Redis through Sentinel, riding through failover.

from redis_ha import connect
r = connect()            # REDIS_SENTINELS, REDIS_MASTER_NAME, REDIS_PASSWORD ... from the environment
r.set("greeting", "hi")  # retried across a failover; RedisUnavailable only after the deadline
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
