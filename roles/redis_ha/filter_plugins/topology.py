"""Decide which node is the Redis master from what Sentinel and the nodes answered.

Pure functions over observed state (no sockets): the discovery tasks collect answers
with redis-cli and hand them to ``redis_ha_decide_master``, which returns the address
and a sentence saying why, which the play prints.
"""

from __future__ import annotations

from collections import Counter
from typing import Any


def _lines(answer: dict[str, Any]) -> list[str]:
    if answer.get("rc", 1) != 0:
        return []
    return [line.strip() for line in str(answer.get("stdout", "")).splitlines() if line.strip()]


def parse_sentinel_answer(answer: dict[str, Any]) -> str | None:
    """'10.0.0.1\\n6379' from SENTINEL GET-MASTER-ADDR-BY-NAME -> '10.0.0.1', else None."""
    lines = _lines(answer)
    if len(lines) >= 2 and lines[1].isdigit() and not lines[0].startswith(("ERR", "NOAUTH", "WRONGPASS")):
        return lines[0]
    return None


def parse_role_answer(answer: dict[str, Any]) -> dict[str, Any] | None:
    """ROLE (--raw) -> {'role': 'master', 'replicas': n} or {'role': 'slave', 'master': ip}."""
    lines = _lines(answer)
    if not lines:
        return None
    if lines[0] == "master":
        # offset, then (ip, port, offset) per connected replica
        return {"role": "master", "replicas": max(0, (len(lines) - 2) // 3)}
    if lines[0] == "slave" and len(lines) >= 2:
        return {"role": "slave", "master": lines[1]}
    return None


def decide_master(
    sentinel_answers: list[dict[str, Any]],
    role_answers: list[dict[str, Any]],
    initial_primary: str | None,
) -> dict[str, Any]:
    """Return {'address', 'live', 'votes', 'reason'}: live means a running cluster confirmed it.

    ``votes`` is how many Sentinels name that address: 0 means no Sentinel monitors the
    master yet, so a restart cannot (and need not) be preceded by a Sentinel failover.

    Each answer is a registered loop result: ``item`` is the address asked, plus rc/stdout.
    """
    roles = {str(x.get("item")): parse_role_answer(x) for x in role_answers}
    # A Sentinel naming an address outside the inventory (e.g. the package's sample config
    # monitoring 127.0.0.1) is not describing this cluster.
    votes = Counter(a for a in (parse_sentinel_answer(x) for x in sentinel_answers) if a and (not roles or a in roles))
    asked = len(sentinel_answers)
    masters = [node for node, role in roles.items() if role and role["role"] == "master"]

    if votes:
        (address, count), *others = votes.most_common()
        reason = f"{count} of {asked} Sentinels name {address} as master"
        if others:
            reason += " (others name " + ", ".join(a for a, _ in others) + "; a failover may be in progress)"
        role = roles.get(address)
        if role and role["role"] != "master":
            reason += f"; but {address} itself reports role {role['role']}"
        return {"address": address, "live": True, "votes": count, "reason": reason}

    if len(masters) == 1:
        return {
            "address": masters[0],
            "live": True,
            "votes": 0,
            "reason": f"no Sentinel knows the master yet; {masters[0]} is the only node that reports role master",
        }
    if len(masters) > 1:
        with_replicas = [m for m in masters if (roles[m] or {}).get("replicas", 0) > 0]
        if len(with_replicas) == 1:
            return {
                "address": with_replicas[0],
                "live": True,
                "votes": 0,
                "reason": f"no Sentinel knows the master; of the nodes reporting master ({', '.join(masters)}) "
                f"only {with_replicas[0]} has replicas",
            }
        if initial_primary in masters:
            return {
                "address": initial_primary,
                "live": True,
                "votes": 0,
                "reason": f"no Sentinel knows the master and several nodes report master ({', '.join(masters)}); "
                f"keeping the inventory's initial primary {initial_primary}",
            }
    followed = Counter(r["master"] for r in roles.values() if r and r["role"] == "slave")
    if followed:
        address, count = followed.most_common(1)[0]
        return {
            "address": address,
            "live": True,
            "votes": 0,
            "reason": f"no Sentinel or master answered; {count} replica(s) follow {address}",
        }
    return {
        "address": initial_primary,
        "live": False,
        "votes": 0,
        "reason": "no Sentinel and no node answered (first deploy): using the inventory's initial primary "
        f"{initial_primary}",
    }


def node_address(hostvars: Any, host: str) -> str:
    """The address a node binds and announces, as the redis_ha role defaults it."""
    host_vars = hostvars[host]
    return str(host_vars.get("redis_ha_address") or host_vars.get("ansible_host") or host)


def node_addresses(hosts: list[str], hostvars: Any) -> list[str]:
    """Addresses of several inventory hosts, in order."""
    return [node_address(hostvars, host) for host in hosts]


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_decide_master": decide_master,
            "redis_ha_node_addresses": node_addresses,
        }
