"""Inventory validation for redis-ha-kit: every problem, in one list of sentences.

The preflight play (ansible/preflight.yml) gathers what the inventory says into one
dict and this pure function returns what is wrong with it, so a user fixes everything
in one go instead of one failed run per mistake.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

PASSWORD_NAMES = (
    "redis_admin_password",
    "redis_app_password",
    "redis_replication_password",
    "redis_sentinel_password",
    "redis_exporter_password",
    "sentinel_password",
    "sentinel_peer_password",
    "sentinel_app_password",
)
# Passwords added in this version: an inventory written for the previous one lacks them.
NEW_PASSWORDS = {
    "sentinel_peer_password": "the user the Sentinels use among themselves",
    "sentinel_app_password": "the read-only Sentinel user of the apps and the Sentinel exporter",
}
MIN_PASSWORD_LENGTH = 16
# A password needs this many different characters, from at least two classes (letters, digits...).
MIN_DISTINCT_CHARACTERS = 6
GENERATE = "openssl rand -base64 32 | tr -d '/+='"
# Values that mean "nobody chose a password yet": the whole value, or any part matching _PLACEHOLDER_MARKERS.
PLACEHOLDERS = {"password", "secret", "redis", "valkey", "admin", "todo", "xxx", "example", "default", "test"}
_PLACEHOLDER_MARKERS = re.compile(r"change[_-]?me|replace[_-]?me|fix[_-]?me|placeholder|your[_-]?password", re.I)
FLAVORS = ("redis", "valkey")
_UNSAFE = re.compile(r"[\s\"'\\]")
_MASTER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _weak(value: str) -> bool:
    """Only one class of character (lowercase, uppercase, digits, others), or a few characters repeated."""
    classes = {
        "lower" if c.islower() else "upper" if c.isupper() else "digit" if c.isdigit() else "other" for c in value
    }
    return len(classes) < 2 or len(set(value)) < MIN_DISTINCT_CHARACTERS


def _password_problems(passwords: dict[str, Any]) -> list[str]:
    problems = []
    for name in PASSWORD_NAMES:
        value = "" if passwords.get(name) is None else str(passwords.get(name))
        where = f"set {name} in group_vars/all (staging/production: vault_{name} in vault.yml)"
        # Never quote the value: the message ends up in logs and CI output.
        if not value and name in NEW_PASSWORDS:
            problems.append(
                f"{name} is missing or empty: it is new in this version ({NEW_PASSWORDS[name]}); "
                f"generate one with `{GENERATE}` and {where}."
            )
        elif not value:
            problems.append(f"{name} is missing or empty: {where}.")
        elif value.lower() in PLACEHOLDERS or _PLACEHOLDER_MARKERS.search(value):
            problems.append(f"{name} still holds a placeholder: {where} with a generated secret (`{GENERATE}`).")
        elif len(value) < MIN_PASSWORD_LENGTH:
            problems.append(
                f"{name} is {len(value)} characters long; use at least {MIN_PASSWORD_LENGTH} (e.g. `{GENERATE}`)."
            )
        elif _UNSAFE.search(value):
            problems.append(
                f"{name} contains whitespace, a quote or a backslash, which config files cannot "
                "hold safely; use letters, digits and punctuation only."
            )
        elif _weak(value):
            problems.append(
                f"{name} is weak: it repeats a few characters or uses only one kind (only lowercase, only "
                f"digits...); {where} with a generated secret (`{GENERATE}`)."
            )
    values = [str(passwords.get(n) or "") for n in PASSWORD_NAMES]
    for index, name in enumerate(PASSWORD_NAMES):
        if values[index] and values[index] in values[:index]:
            first = PASSWORD_NAMES[values.index(values[index])]
            problems.append(f"{name} is the same as {first}; give every user its own password.")
    return problems


def inventory_problems(observed: dict[str, Any]) -> list[str]:
    """Return every problem with the inventory as a sentence saying what to fix."""
    problems: list[str] = []
    redis_hosts = list(observed.get("redis_hosts") or [])
    sentinel_hosts = list(observed.get("sentinel_hosts") or [])
    addresses: dict[str, str] = dict(observed.get("addresses") or {})

    if not redis_hosts:
        problems.append("Group 'redis' is empty: list the Redis nodes (one primary plus replicas).")
    count = len(sentinel_hosts)
    if count < 3 or count % 2 == 0:
        problems.append(
            f"Group 'sentinel' has {count} host(s): use an odd number of at least 3 (3 or 5), so "
            "a majority of Sentinels is left to authorize a failover when one host is lost."
        )

    raw_quorum = observed.get("quorum")
    try:
        quorum = int(raw_quorum) if raw_quorum not in (None, "") else count // 2 + 1
    except (TypeError, ValueError):
        problems.append(f"sentinel_quorum is '{raw_quorum}'; it must be a whole number.")
    else:
        if quorum < 2 or quorum > count:
            problems.append(
                f"sentinel_quorum is {quorum} with {count} Sentinel(s): it must be between 2 and "
                f"the number of Sentinels ({count}); {count // 2 + 1} is the usual choice."
            )

    primaries = list(observed.get("initial_primaries") or [])
    if not primaries and redis_hosts:
        problems.append(
            "No host in group 'redis' has redis_initial_primary: true; set it on exactly one "
            "host (the primary of the first deploy; later deploys ask Sentinel)."
        )
    elif len(primaries) > 1:
        problems.append(
            f"Several hosts have redis_initial_primary: true ({', '.join(primaries)}); keep it on exactly one."
        )

    seen: dict[str, str] = {}
    for host in dict.fromkeys(redis_hosts + sentinel_hosts):
        address = str(addresses.get(host) or "")
        if not _is_ip(address):
            problems.append(
                f"Host {host} has address '{address}', which is not an IP address: set "
                "redis_ha_address (or ansible_host) to its private IP."
            )
        elif address in seen:
            problems.append(
                f"Hosts {seen[address]} and {host} share the address {address}: every node needs "
                "its own redis_ha_address."
            )
        else:
            seen[address] = host

    flavor = observed.get("flavor")
    if flavor not in FLAVORS:
        problems.append(f"redis_ha_flavor is '{flavor}'; choose one of: {', '.join(FLAVORS)}.")
    master_name = str(observed.get("master_name") or "")
    if not _MASTER_NAME.match(master_name):
        problems.append(f"redis_ha_master_name is '{master_name}'; use letters, digits, '.', '_' or '-'.")

    problems.extend(_password_problems(dict(observed.get("passwords") or {})))

    if observed.get("tls"):
        for name in ("redis_ha_tls_ca_src", "redis_ha_tls_cert_src", "redis_ha_tls_key_src"):
            if not (observed.get("tls_sources") or {}).get(name):
                problems.append(f"redis_ha_tls is true but {name} is empty: point it at the file on the controller.")
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {"redis_ha_inventory_problems": inventory_problems}
