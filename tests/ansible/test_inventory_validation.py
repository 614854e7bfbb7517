"""The preflight play rejects inventories that cannot make a working cluster, saying what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import GOOD_PASSWORDS, REPO, cluster_hosts, run_playbook, write_inventory

PREFLIGHT = REPO / "ansible" / "preflight.yml"


def preflight(tmp_path: Path, hosts: dict[str, Any] | None = None, **group_vars: Any) -> tuple[bool, str]:
    inventory = write_inventory(tmp_path / "inv", hosts or cluster_hosts(), {**GOOD_PASSWORDS, **group_vars})
    result = run_playbook(PREFLIGHT, inventory)
    return result.ok, result.output


def test_a_sound_inventory_passes(tmp_path: Path) -> None:
    ok, output = preflight(tmp_path)
    assert ok, output
    assert "Inventory OK: 3 Redis node(s), 3 Sentinel(s), initial primary node1." in output


def with_initial_primaries(*names: str) -> dict[str, Any]:
    hosts = cluster_hosts()
    for name, host_vars in hosts["redis"]["hosts"].items():
        host_vars.pop("redis_initial_primary", None)
        if name in names:
            host_vars["redis_initial_primary"] = True
    return hosts


def with_duplicate_address() -> dict[str, Any]:
    hosts = cluster_hosts()
    hosts["redis"]["hosts"]["node3"]["ansible_host"] = hosts["redis"]["hosts"]["node2"]["ansible_host"]
    return hosts


CASES: dict[str, tuple[dict[str, Any] | None, dict[str, Any], str]] = {
    "even_sentinels": (cluster_hosts(3, 4), {}, "Group 'sentinel' has 4 host(s): use an odd number of at least 3"),
    "too_few_sentinels": (cluster_hosts(2, 1), {}, "Group 'sentinel' has 1 host(s): use an odd number of at least 3"),
    "quorum_above_sentinels": (
        None,
        {"sentinel_quorum": 4},
        "sentinel_quorum is 4 with 3 Sentinel(s): it must be between 2",
    ),
    "quorum_of_one": (None, {"sentinel_quorum": 1}, "sentinel_quorum is 1 with 3 Sentinel(s): it must be between 2"),
    "no_initial_primary": (with_initial_primaries(), {}, "No host in group 'redis' has redis_initial_primary: true"),
    "two_initial_primaries": (
        with_initial_primaries("node1", "node2"),
        {},
        "Several hosts have redis_initial_primary: true (node1, node2)",
    ),
    "placeholder_password": (
        None,
        {"redis_app_password": "CHANGE_ME"},
        "redis_app_password still holds a placeholder: set redis_app_password in group_vars/all",
    ),
    "empty_password": (None, {"sentinel_password": ""}, "sentinel_password is missing or empty"),
    "short_password": (
        None,
        {"redis_admin_password": "short-secret"},
        "redis_admin_password is 12 characters long; use at least 16",
    ),
    "shared_password": (
        None,
        {"redis_app_password": GOOD_PASSWORDS["redis_admin_password"]},
        "redis_app_password is the same as redis_admin_password",
    ),
    "weak_password": (
        None,
        {"redis_replication_password": "a" * 20},
        "redis_replication_password is weak: it repeats a few characters or uses only one kind",
    ),
    "new_sentinel_peer_password_missing": (
        None,
        {"sentinel_peer_password": ""},
        "sentinel_peer_password is missing or empty: it is new in this version (the user the Sentinels use "
        "among themselves); generate one with `openssl rand -base64 32 | tr -d '/+='`",
    ),
    "duplicate_address": (with_duplicate_address(), {}, "Hosts node2 and node3 share the address 10.1.0.12"),
    "unknown_flavor": (None, {"redis_ha_flavor": "keydb"}, "redis_ha_flavor is 'keydb'; choose one of: redis, valkey"),
    "hostname_as_address": (
        None,
        {"redis_ha_address": "redis.example.com"},
        "has address 'redis.example.com', which is not an IP address",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_preflight_rejects_the_inventory_and_says_what_to_fix(tmp_path: Path, case: str) -> None:
    hosts, group_vars, message = CASES[case]
    ok, output = preflight(tmp_path, hosts, **group_vars)
    assert not ok
    assert message in output
    assert "The inventory needs" in output


def test_preflight_reports_every_problem_in_one_message(tmp_path: Path) -> None:
    ok, output = preflight(
        tmp_path,
        with_initial_primaries(),
        sentinel_quorum=5,
        redis_exporter_password="CHANGE_ME",
        redis_ha_flavor="keydb",
    )
    assert not ok
    assert "The inventory needs 4 fix(es) before anything is deployed" in output
    for message in (
        "sentinel_quorum is 5",
        "No host in group 'redis'",
        "redis_exporter_password still holds",
        "redis_ha_flavor is 'keydb'",
    ):
        assert message in output


def test_a_placeholder_or_weak_password_never_appears_in_the_output(tmp_path: Path) -> None:
    weak = "1" * 20
    ok, output = preflight(tmp_path, redis_app_password="CHANGE_ME", redis_exporter_password=weak)
    assert not ok
    assert "redis_app_password still holds a placeholder" in output
    assert "redis_exporter_password is weak" in output
    assert "CHANGE_ME" not in output
    assert weak not in output


def test_staging_without_its_vault_file_asks_for_the_secrets() -> None:
    result = run_playbook(PREFLIGHT, REPO / "ansible" / "inventories" / "staging")
    assert not result.ok
    assert "redis_admin_password is missing or empty" in result.output
    assert "vault_redis_admin_password in vault.yml" in result.output
