"""The ACL rules the roles give each user, read from the roles themselves.

The loopback cluster sets its users up with exactly these rules, so every client, RQ and drill
test also proves that an app can do its work with the app users' permissions (and Sentinels
their failovers with theirs) - not with a looser copy kept for the tests.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


def _load(path: str) -> dict[str, Any]:
    data = yaml.safe_load((ROLES / path).read_text())
    return data if isinstance(data, dict) else {}


def _internal_rules(users: list[dict[str, Any]], name_variable: str) -> str:
    """The rules of the role-internal user whose name is ``{{ name_variable }}`` (plain text there)."""
    for user in users:
        if name_variable in str(user.get("name")):
            return " ".join(str(user["rules"]).split())
    raise LookupError(f"no user named by {name_variable} in the role vars")


@cache
def redis_app_rules() -> str:
    defaults = _load("redis/defaults/main.yml")
    channels = " ".join(f"&{channel}" for channel in defaults["redis_acl_app_channels"])
    return f"{' '.join(defaults['redis_acl_app_rules'].split())} resetchannels {channels}"


@cache
def redis_replication_rules() -> str:
    return _internal_rules(_load("redis/vars/main.yml")["_redis_acl_users"], "redis_ha_replication_user")


@cache
def redis_sentinel_rules() -> str:
    return _internal_rules(_load("redis/vars/main.yml")["_redis_acl_users"], "redis_ha_sentinel_user")


@cache
def sentinel_peer_rules() -> str:
    return _internal_rules(_load("sentinel/vars/main.yml")["_sentinel_acl_users"], "redis_ha_sentinel_peer_user")


@cache
def sentinel_app_rules() -> str:
    return " ".join(_load("sentinel/defaults/main.yml")["sentinel_acl_app_rules"].split())
