"""Which Sentinels must forget a node, when a reset one sees the cluster again, and which
retirements are refused: the pure decisions of roles/redis_ha/filter_plugins/membership.py,
plus the parsing checked against what a real Sentinel prints through redis-cli --raw."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

from tests.ansible.conftest import GOOD_PASSWORDS, REPO, cluster_hosts, load_plugin, run_playbook, write_inventory
from tests.support.cluster import LoopbackCluster

membership = load_plugin("membership")

MEMBERS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def instance(ip: str, flags: str, port: str = "6379", runid: str = "abc") -> list[str]:
    return ["name", f"{ip}:{port}", "ip", ip, "port", port, "runid", runid, "flags", flags, "link-refcount", "1"]


def test_a_sentinel_listing_only_members_needs_no_reset() -> None:
    replicas = instance("10.0.0.2", "slave") + instance("10.0.0.3", "slave")
    sentinels = instance("10.0.0.2", "sentinel", "26379") + instance("10.0.0.3", "sentinel", "26379")
    assert membership.sentinel_stale_entries(replicas, sentinels, MEMBERS, MEMBERS) == ""


def test_a_retired_replica_and_sentinel_are_named_as_stale() -> None:
    replicas = instance("10.0.0.2", "slave") + instance("10.0.0.4", "s_down,slave,disconnected")
    sentinels = instance("10.0.0.4", "s_down,sentinel,disconnected", "26379")
    reason = membership.sentinel_stale_entries(replicas, sentinels, MEMBERS, MEMBERS)
    assert "replica 10.0.0.4:6379 (s_down,slave,disconnected)" in reason
    assert "Sentinel 10.0.0.4:26379" in reason


def test_a_replaced_sentinels_old_identity_at_the_same_address_is_stale() -> None:
    sentinels = instance("10.0.0.2", "sentinel", "26379", "old") + instance("10.0.0.2", "sentinel", "0", "new")
    reason = membership.sentinel_stale_entries([], sentinels, MEMBERS, MEMBERS)
    assert "a second Sentinel at 10.0.0.2" in reason


def test_a_reset_sentinel_waits_for_every_remaining_member_up() -> None:
    just_reset = membership.sentinel_missing_members([], [], "10.0.0.1", MEMBERS, MEMBERS, "10.0.0.1")
    assert just_reset == "it does not see replica 10.0.0.2, replica 10.0.0.3, Sentinel 10.0.0.2, Sentinel 10.0.0.3 yet"
    half = membership.sentinel_missing_members(
        instance("10.0.0.2", "slave") + instance("10.0.0.3", "s_down,slave"),
        instance("10.0.0.2", "sentinel", "26379") + instance("10.0.0.3", "sentinel", "26379"),
        "10.0.0.1",
        MEMBERS,
        MEMBERS,
        "10.0.0.1",
    )
    assert half == "it does not see replica 10.0.0.3 (down) yet"


def test_retiring_is_refused_below_one_replica_three_sentinels_or_a_reachable_quorum() -> None:
    hosts = ["redis1", "redis2", "redis3"]
    problems = membership.membership_problems(hosts, hosts, ["redis3"], 1, 3)
    assert len(problems) == 2
    assert "leaves 2 Sentinel(s)" in problems[0]
    assert "sentinel_quorum is 3 but only 2 Sentinel(s) would be left" in problems[1]
    two = membership.membership_problems(["redis1", "redis2"], [*hosts, "redis4"], ["redis2"], 1, None)
    assert two == [
        "retiring redis2 leaves 1 Redis node(s): a master and 0 replica(s), fewer than the 1 replica(s) a failover "
        "and redis_min_replicas_to_write need. Add a replica first (a new host in the redis group, make deploy)."
    ]
    assert membership.membership_problems(["redis1"], ["redis1"], ["app1"], 1, None)[0].startswith("app1 is in neither")


def test_retiring_one_of_four_keeps_a_safe_cluster() -> None:
    hosts = ["redis1", "redis2", "redis3", "redis4"]
    assert membership.membership_problems(hosts, hosts, ["redis2"], 1, None) == []


def sentinel_view(cluster: LoopbackCluster, port: int) -> list[str]:
    commands = "\n".join(
        [
            cluster.sentinel_password,
            f"SENTINEL REPLICAS {cluster.master_name}",
            "PING",
            f"SENTINEL SENTINELS {cluster.master_name}",
        ]
    )
    reply = subprocess.run(
        ["redis-cli", "--no-auth-warning", "--askpass", "-p", str(port), "--raw"],
        input=commands + "\n",
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return reply.stdout.splitlines()


def test_the_view_of_a_real_sentinel_is_read_as_its_replicas_and_peers(cluster: LoopbackCluster) -> None:
    port = cluster.sentinel_addrs[0][1]
    deadline = time.monotonic() + 30
    while True:
        view = membership.sentinel_view_split(sentinel_view(cluster, port))
        replicas = membership._instances(view["replicas"])
        sentinels = membership._instances(view["sentinels"])
        if (len(replicas), len(sentinels)) == (2, 2) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(r["port"] for r in replicas) == sorted(str(n.port) for n in cluster.replica_nodes())
    assert all("slave" in r["flags"].split(",") for r in replicas)
    assert sorted(s["port"] for s in sentinels) == sorted(str(p) for _, p in cluster.sentinel_addrs[1:])
    # The kit tells nodes apart by address (one node per host); here all share 127.0.0.1.
    ips = ["127.0.0.1"]
    assert membership.sentinel_stale_entries(view["replicas"], [], ips, ips) == ""
    assert membership.sentinel_stale_entries(view["replicas"], [], ["127.0.0.2"], ips).count("replica 127.0.0.1") == 2


RETIRE = REPO / "ansible" / "retire.yml"


def retire(tmp_path: Path, hosts: dict[str, Any], **extra: Any) -> tuple[bool, str]:
    # --limit localhost (listed, so the limit matches it): only the controller's checks may run,
    # whatever they decide; no play reaches a node (with -c local that would be this machine).
    hosts = {**hosts, "controller": {"hosts": {"localhost": {"ansible_connection": "local"}}}}
    inventory_dir = write_inventory(tmp_path / "inv", hosts, dict(GOOD_PASSWORDS))
    result = run_playbook(RETIRE, inventory_dir, extra or None, "--limit", "localhost")
    return result.ok, result.output


def test_make_retire_refuses_to_leave_two_sentinels_before_touching_a_host(tmp_path: Path) -> None:
    ok, output = retire(tmp_path, cluster_hosts(), retire_host="node2")
    assert not ok
    assert "Nothing was changed: taking node2 out needs 1 fix(es) first" in output
    assert "leaves 2 Sentinel(s)" in output


def test_make_retire_without_a_host_says_which_to_name(tmp_path: Path) -> None:
    ok, output = retire(tmp_path, cluster_hosts())
    assert not ok
    assert "Name the host to take out (make retire HOST=<inventory name>)." in output


def test_make_retire_accepts_one_of_four(tmp_path: Path) -> None:
    ok, output = retire(tmp_path, cluster_hosts(4, 4), retire_host="node4")
    assert ok, output
    assert "Without node4 the cluster can still fail over." in output
