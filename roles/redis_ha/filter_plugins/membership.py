"""What one Sentinel knows about the cluster's members, compared with what the inventory says.

A Sentinel never forgets a replica or a Sentinel by itself: a node that left stays listed (down)
and still counts when a failover leader is elected. These decisions tell the kit whether a
Sentinel holds such a stale entry (so it must be reset) and, after a reset, whether it sees every
remaining member again (so the next Sentinel may be reset). Each returns "" when all is well, or
a sentence saying what is wrong.
"""

from __future__ import annotations

from typing import Any


def _instances(lines: list[str]) -> list[dict[str, str]]:
    """SENTINEL REPLICAS / SENTINELS printed by redis-cli --raw: field and value lines, each
    instance starting with its `name` field."""
    instances: list[dict[str, str]] = []
    fields = [str(line) for line in lines]
    for key, value in zip(fields[::2], fields[1::2], strict=False):
        if key == "name":
            instances.append({})
        if instances:
            instances[-1][key] = value
    return instances


def sentinel_view_split(lines: list[str]) -> dict[str, list[str]]:
    """The reply to _redis_ha_sentinel_view_commands: SENTINEL REPLICAS lines, PONG, SENTINEL
    SENTINELS lines."""
    fields = [str(line) for line in lines]
    cut = fields.index("PONG") if "PONG" in fields else len(fields)
    return {"replicas": fields[:cut], "sentinels": fields[cut + 1 :]}


def _down(instance: dict[str, str]) -> bool:
    flags = instance.get("flags", "").split(",")
    return "s_down" in flags or "o_down" in flags or "disconnected" in flags


def sentinel_stale_entries(
    replica_lines: list[str],
    sentinel_lines: list[str],
    redis_addresses: list[str],
    sentinel_addresses: list[str],
) -> str:
    """Why this Sentinel must be reset: it lists a replica or a Sentinel that is not a member
    (or one Sentinel address twice, a replaced host's old identity); "" when it lists none."""
    problems: list[str] = []
    for replica in _instances(replica_lines):
        if replica.get("ip") not in redis_addresses:
            problems.append(f"replica {replica.get('ip')}:{replica.get('port')} ({replica.get('flags', '')})")
    seen: set[str] = set()
    for sentinel in _instances(sentinel_lines):
        ip = sentinel.get("ip", "")
        if ip not in sentinel_addresses:
            problems.append(f"Sentinel {ip}:{sentinel.get('port')} ({sentinel.get('flags', '')})")
        elif ip in seen:
            problems.append(f"a second Sentinel at {ip} (run id {sentinel.get('runid', '?')})")
        seen.add(ip)
    return "it still lists " + ", ".join(problems) if problems else ""


def sentinel_missing_members(
    replica_lines: list[str],
    sentinel_lines: list[str],
    master_address: str,
    redis_addresses: list[str],
    sentinel_addresses: list[str],
    own_address: str,
) -> str:
    """Why this Sentinel does not yet see the whole cluster: a remaining replica or another
    Sentinel it does not list, or lists as down; "" when it sees every one of them up."""
    # An address counts as seen when any entry for it is up: a replaced Sentinel's old identity may
    # still be listed, down, beside the new one until a reset.
    replicas = _instances(replica_lines)
    sentinels = _instances(sentinel_lines)
    replicas_up = {r.get("ip") for r in replicas if not _down(r)}
    sentinels_up = {s.get("ip") for s in sentinels if not _down(s)}
    listed_replicas = {r.get("ip") for r in replicas}
    listed_sentinels = {s.get("ip") for s in sentinels}
    missing = [
        f"replica {address}" + (" (down)" if address in listed_replicas else "")
        for address in redis_addresses
        if address != master_address and address not in replicas_up
    ]
    missing += [
        f"Sentinel {address}" + (" (down)" if address in listed_sentinels else "")
        for address in sentinel_addresses
        if address != own_address and address not in sentinels_up
    ]
    return "it does not see " + ", ".join(missing) + " yet" if missing else ""


def membership_problems(
    redis_hosts: list[str],
    sentinel_hosts: list[str],
    leaving: list[str],
    min_replicas_to_write: int,
    quorum: Any,
) -> list[str]:
    """Everything that makes removing `leaving` from the cluster unsafe, all at once: the
    cluster must keep a replica for every replica a write waits for (at least one), three
    Sentinels (so one may fail and a majority still elects a leader), and a quorum no larger
    than the Sentinels left."""
    problems: list[str] = []
    unknown = [host for host in leaving if host not in redis_hosts and host not in sentinel_hosts]
    if unknown:
        problems.append(
            f"{', '.join(unknown)} is in neither the redis nor the sentinel group; set HOST to an inventory host name."
        )
    redis_left = [host for host in redis_hosts if host not in leaving]
    sentinels_left = [host for host in sentinel_hosts if host not in leaving]
    needed_replicas = max(1, int(min_replicas_to_write))
    if len(redis_hosts) != len(redis_left) and len(redis_left) - 1 < needed_replicas:
        problems.append(
            f"retiring {', '.join(leaving)} leaves {len(redis_left)} Redis node(s): a master and "
            f"{max(0, len(redis_left) - 1)} replica(s), fewer than the {needed_replicas} replica(s) a failover and "
            "redis_min_replicas_to_write need. Add a replica first (a new host in the redis group, make deploy)."
        )
    if len(sentinel_hosts) != len(sentinels_left) and len(sentinels_left) < 3:
        problems.append(
            f"retiring {', '.join(leaving)} leaves {len(sentinels_left)} Sentinel(s): with fewer than 3, one more "
            "failure leaves no majority to elect a failover leader. Add a Sentinel first (a new host in the "
            "sentinel group, make deploy)."
        )
    try:
        quorum_value = int(quorum)
    except (TypeError, ValueError):
        quorum_value = len(sentinels_left) // 2 + 1
    if quorum_value > len(sentinels_left):
        problems.append(
            f"sentinel_quorum is {quorum_value} but only {len(sentinels_left)} Sentinel(s) would be left: no master "
            "could ever be agreed down. Lower sentinel_quorum (or leave it unset: a majority) and deploy first."
        )
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_sentinel_view_split": sentinel_view_split,
            "redis_ha_sentinel_instances": _instances,
            "redis_ha_sentinel_stale_entries": sentinel_stale_entries,
            "redis_ha_sentinel_missing_members": sentinel_missing_members,
            "redis_ha_membership_problems": membership_problems,
        }
