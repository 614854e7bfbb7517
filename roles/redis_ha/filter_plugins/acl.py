"""ACL users of Redis and Sentinel: the lines to write, and which password hashes to keep.

A changed password is rolled out in two deploys without a moment where a client holding
either password is refused: the first deploy keeps the old hash beside the new one (apps,
replicas, Sentinels and exporters move to the new password during that run); the next
deploy, finding the new hash already in place, drops the old one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def password_hash(password: str) -> str:
    """The SHA-256 form Redis keeps for a password (``#<hex>`` in ACL rules)."""
    return hashlib.sha256(str(password).encode()).hexdigest()


def existing_hashes(acl_text: str, user: str) -> list[str]:
    """The password hashes ``user`` has in an ACL file or ``ACL LIST`` reply (``user NAME ... #hex``)."""
    for line in (acl_text or "").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "user" and words[1] == user:
            return [word[1:] for word in words[2:] if word.startswith("#") and len(word) == 65]
    return []


def rotation_hashes(acl_text: str, user: str, password: str) -> list[str]:
    """Hashes to give ``user``: the new password's, plus the old ones while the new one is not in place yet.

    Only the newest old hash is kept, so a password changed twice in a row does not pile up.
    """
    new = password_hash(password)
    old = [digest for digest in existing_hashes(acl_text, user) if digest != new]
    if new in existing_hashes(acl_text, user) or not old:
        return [new]
    return [new, old[0]]


def acl_rules(user: Mapping[str, Any], acl_text: str = "") -> str:
    """``on #new [#old] RULES`` for one user (``off`` and its rules when it has no password)."""
    rules = " ".join(str(user.get("rules", "")).split())
    if user.get("password") is None:
        return rules
    hashes = rotation_hashes(acl_text, str(user["name"]), str(user["password"]))
    return " ".join(["on", *(f"#{digest}" for digest in hashes), rules]).strip()


def acl_lines(users: Sequence[Mapping[str, Any]], acl_text: str = "") -> list[str]:
    """``user NAME reset ...`` per user, the form of an ACL file and, after ``ACL SETUSER``, of a command."""
    return [f"{user['name']} reset {acl_rules(user, acl_text)}" for user in users]


def acl_channels(channels: Iterable[str]) -> str:
    """``resetchannels &a &b``: the pub/sub channels a user may use, and no others."""
    return " ".join(["resetchannels", *(f"&{channel}" for channel in channels)])


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_acl_lines": acl_lines,
            "redis_ha_acl_channels": acl_channels,
        }
