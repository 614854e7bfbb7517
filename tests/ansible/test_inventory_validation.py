"""The preflight play rejects inventories that cannot make a working cluster, saying what to fix.

Most cases are checked on the pure function (``inventory_problems``, milliseconds each); a
representative case per kind of problem runs the real ansible/preflight.yml against a generated
inventory, to show the playbook gathers each value (per-host overrides and role defaults included).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.conftest import (
    GOOD_PASSWORDS,
    REPO,
    ROLE_NAMES,
    ROLES,
    cluster_hosts,
    load_plugin,
    run_playbook,
    write_inventory,
)

PREFLIGHT = REPO / "ansible" / "preflight.yml"
VALIDATE = ROLES / "redis_ha" / "tasks" / "validate_inventory.yml"
inventory = load_plugin("inventory")
ANY_IPV4 = "0.0.0.0"  # noqa: S104 - the wildcard address the preflight refuses


def preflight(
    tmp_path: Path,
    hosts: dict[str, Any] | None = None,
    host_vars: dict[str, dict[str, Any]] | None = None,
    **group_vars: Any,
) -> tuple[bool, str]:
    inventory_dir = write_inventory(
        tmp_path / "inv", hosts or cluster_hosts(), {**GOOD_PASSWORDS, **group_vars}, host_vars
    )
    result = run_playbook(PREFLIGHT, inventory_dir)
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


def with_on_node2(**variables: Any) -> dict[str, Any]:
    """The usual cluster with host variables of node2 in hosts.yml (a per-host override)."""
    hosts = cluster_hosts()
    hosts["redis"]["hosts"]["node2"].update(variables)
    return hosts


CASES: dict[str, tuple[dict[str, Any] | None, dict[str, Any], str]] = {
    "too_few_sentinels": (cluster_hosts(2, 1), {}, "Group 'sentinel' has 1 host(s): use at least 3"),
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
    "wildcard_address_on_one_host": (
        with_on_node2(ansible_host=ANY_IPV4),
        {},
        "Host node2 has address 0.0.0.0, a wildcard: the other nodes cannot reach it there; set redis_ha_address",
    ),
    "unknown_flavor": (
        None,
        {"redis_ha_flavor": "keydb"},
        "redis_ha_flavor is 'keydb' on node1, node2, node3: choose one of: redis, valkey",
    ),
    "hostname_as_address": (
        None,
        {"redis_ha_address": "redis.example.com"},
        "has address 'redis.example.com', which is not an IP address",
    ),
    "one_redis_node": (cluster_hosts(1, 3), {}, "Group 'redis' has 1 host: list at least 2 (a primary plus a replica)"),
    "ports_collide_on_one_host": (
        with_on_node2(redis_ha_sentinel_port=6379),
        {},
        "redis_ha_sentinel_port and redis_ha_redis_port are both 6379 on node2: give every service on a host its "
        "own port.",
    ),
    "port_out_of_range": (
        None,
        {"redis_ha_exporter_redis_port": 70000},
        "redis_ha_exporter_redis_port is 70000 on node1, node2, node3: set it to a whole number from 1 to 65535.",
    ),
    "down_after_zero": (
        None,
        {"sentinel_down_after_milliseconds": 0},
        "sentinel_down_after_milliseconds is 0 on node1, node2, node3: set it to a whole number of milliseconds "
        "above 0",
    ),
    "maxmemory_with_a_unit": (
        None,
        {"redis_maxmemory_mb": "1gb"},
        "redis_maxmemory_mb is '1gb' on node1, node2, node3: set it to a whole number of MiB (0: no limit)",
    ),
    "evicting_policy": (
        None,
        {"redis_maxmemory_policy": "allkeys-lru"},
        "redis_maxmemory_policy is allkeys-lru on node1, node2, node3: RQ loses jobs when Redis evicts keys. Keep "
        "noeviction, or set redis_allow_eviction: true",
    ),
    "loopback_in_bind_extra_addresses": (
        with_on_node2(redis_bind_extra_addresses=["10.2.0.12", "127.0.0.2"]),
        {},
        "redis_bind_extra_addresses lists 127.0.0.2, a loopback address, on node2",
    ),
    "more_replicas_to_write_than_replicas": (
        None,
        {"redis_min_replicas_to_write": 3},
        "redis_min_replicas_to_write is 3 on node1, node2, node3 but the cluster has 2 replica(s): the master would "
        "refuse every write; set it to at most 2",
    ),
    "app_db_beyond_databases": (
        None,
        {"redis_ha_app_db": 16},
        "redis_ha_app_db is 16 but redis_databases is 16 on node1, node2, node3: databases are numbered 0 to 15",
    ),
    "extra_config_turns_protected_mode_off": (
        None,
        # YAML's bare `no` is a boolean: the check must read it as Redis would.
        {"redis_extra_config": {"protected-mode": False}},
        "redis_extra_config sets 'protected-mode no' on node1, node2, node3, which turns protected mode off: "
        "remove it, or set redis_extra_config_allow_unsafe: true",
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


def tls_files(directory: Path, hosts: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Real files on the controller: the CA in group vars, each host's certificate and key in its host_vars."""
    directory.mkdir()
    (directory / "ca.crt").write_text("CA\n")
    host_vars = {}
    for host in hosts:
        for name in (host, f"{host}-exporter"):
            for kind in ("crt", "key"):
                (directory / f"{name}.{kind}").write_text(f"{name} {kind}\n")
        host_vars[host] = {
            "redis_ha_tls_cert_src": str(directory / f"{host}.crt"),
            "redis_ha_tls_key_src": str(directory / f"{host}.key"),
            "redis_exporter_tls_cert_src": str(directory / f"{host}-exporter.crt"),
            "redis_exporter_tls_key_src": str(directory / f"{host}-exporter.key"),
        }
    return {"redis_ha_tls": True, "redis_ha_tls_ca_src": str(directory / "ca.crt")}, host_vars


def test_tls_with_each_hosts_certificate_in_its_host_vars_passes(tmp_path: Path) -> None:
    group_vars, host_vars = tls_files(tmp_path / "certs", ["node1", "node2", "node3", "node4", "node5"])
    ok, output = preflight(tmp_path, cluster_hosts(3, 5), host_vars, **group_vars)
    assert ok, output
    assert "Inventory OK: 3 Redis node(s), 5 Sentinel(s)" in output


def test_tls_names_the_host_whose_certificate_is_missing(tmp_path: Path) -> None:
    group_vars, host_vars = tls_files(tmp_path / "certs", ["node1", "node2", "node3"])
    (tmp_path / "certs" / "node2.key").unlink()
    del host_vars["node3"]["redis_ha_tls_cert_src"]
    ok, output = preflight(tmp_path, None, host_vars, **group_vars)
    assert not ok
    assert "The inventory needs 2 fix(es)" in output
    assert (
        f"redis_ha_tls_key_src is '{tmp_path}/certs/node2.key' on node2, which is not a file on the controller: "
        "point it at that node's private key"
    ) in output
    assert (
        "redis_ha_tls is true but redis_ha_tls_cert_src is empty on node3: set it (in its host_vars) to that node's "
        "certificate"
    ) in output


def test_an_evicting_policy_passes_with_redis_allow_eviction(tmp_path: Path) -> None:
    ok, output = preflight(tmp_path, redis_maxmemory_policy="allkeys-lru", redis_allow_eviction=True)
    assert ok, output


def test_unsafe_extra_config_passes_with_the_explicit_override(tmp_path: Path) -> None:
    ok, output = preflight(
        tmp_path,
        redis_extra_config={"enable-debug-command": "local", "rename-command FLUSHALL": '""'},
        redis_extra_config_allow_unsafe=True,
    )
    assert ok, output


def test_the_defaults_the_preflight_assumes_are_the_roles_defaults() -> None:
    """validate_inventory.yml cannot read the other roles' defaults: it repeats them, and must keep them in step."""
    task = yaml.safe_load(VALIDATE.read_text())[0]
    assumed: dict[str, str] = task["vars"]["__redis_ha_host_defaults"]
    defaults: dict[str, Any] = {}
    for role in ROLE_NAMES:
        defaults.update(yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {})
    for name, expression in assumed.items():
        assert name in defaults, f"{name} is not a role default"
        if expression == "{{ " + name + " }}":
            continue  # the redis_ha role's own default, in scope during the preflight
        literal = re.fullmatch(r"\{\{ (\w+) \| default\((.*)\) \}\}", expression)
        assert literal and literal.group(1) == name, expression
        assert yaml.safe_load(literal.group(2)) == defaults[name], f"{name}: {expression} vs {defaults[name]!r}"


# The pure function: a sound cluster as the preflight observes it, then one change at a time.
HOSTS = ["node1", "node2", "node3"]
HOST_DEFAULTS: dict[str, Any] = {
    "redis_ha_redis_port": 6379,
    "redis_ha_sentinel_port": 26379,
    "redis_ha_exporter_redis_port": 9121,
    "redis_ha_exporter_sentinel_port": 9355,
    "redis_ha_tls": False,
    "redis_ha_tls_ca_src": "",
    "redis_ha_tls_cert_src": "",
    "redis_ha_tls_key_src": "",
    "redis_exporter_tls_cert_src": "",
    "redis_exporter_tls_key_src": "",
    "redis_acl_app_rules": "~* +@all -@admin -@dangerous +info +role",
    "redis_acl_app_channels": ["rq:*"],
    "redis_bind_extra_addresses": [],
    "redis_databases": 16,
    "redis_maxmemory_policy": "noeviction",
    "redis_allow_eviction": False,
    "redis_min_replicas_to_write": 1,
    "redis_extra_config": {},
    "redis_extra_config_allow_unsafe": False,
    "sentinel_down_after_milliseconds": 5000,
    "sentinel_failover_timeout": 60000,
    "sentinel_parallel_syncs": 1,
}


def problems(
    everywhere: dict[str, Any] | None = None, node2: dict[str, Any] | None = None, **observed: Any
) -> list[str]:
    """Problems of the sound cluster with ``everywhere`` set on every host and ``node2`` on node2 only."""
    hosts = {host: {**HOST_DEFAULTS, **(everywhere or {})} for host in HOSTS}
    hosts["node2"].update(node2 or {})
    found: list[str] = inventory.inventory_problems(
        {
            "redis_hosts": HOSTS,
            "sentinel_hosts": HOSTS,
            "addresses": {host: f"10.0.0.{index}" for index, host in enumerate(HOSTS, 1)},
            "initial_primaries": ["node1"],
            "quorum": None,
            "flavor": "redis",
            "master_name": "mymaster",
            "tls": False,
            "app_db": 0,
            "hosts": hosts,
            "tls_files_found": [],
            "passwords": dict(GOOD_PASSWORDS),
            "deploy_dir": "/srv/ops/.deploy/prod",
            **observed,
        }
    )
    return found


def test_the_sound_cluster_has_no_problem() -> None:
    assert problems() == []


def test_nodes_of_both_flavors_are_a_cluster_moving_from_one_to_the_other() -> None:
    assert problems(node2={"redis_ha_flavor": "valkey"}) == []


def test_settings_the_inventory_leaves_out_are_not_problems() -> None:
    assert problems(hosts={}, app_db=None) == []


UNIT_CASES: dict[str, tuple[dict[str, Any], str]] = {
    # Flavor, per node.
    "unknown_flavor_on_one_node": (
        {"node2": {"redis_ha_flavor": "keydb"}},
        "redis_ha_flavor is 'keydb' on node2: choose one of: redis, valkey.",
    ),
    # Ports.
    "port_zero": ({"node2": {"redis_ha_redis_port": 0}}, "redis_ha_redis_port is 0 on node2: set it to a whole"),
    "port_not_a_number": (
        {"everywhere": {"redis_ha_sentinel_port": "26379x"}},
        "redis_ha_sentinel_port is '26379x' on node1, node2, node3: set it to a whole number from 1 to 65535.",
    ),
    "port_a_boolean": ({"node2": {"redis_ha_redis_port": True}}, "redis_ha_redis_port is True on node2"),
    "exporter_ports_collide": (
        {"everywhere": {"redis_ha_exporter_sentinel_port": 9121}},
        "redis_ha_exporter_sentinel_port and redis_ha_exporter_redis_port are both 9121 on node1, node2, node3",
    ),
    "exporter_on_the_redis_port": (
        {"node2": {"redis_ha_exporter_redis_port": "6379"}},
        "redis_ha_exporter_redis_port and redis_ha_redis_port are both 6379 on node2",
    ),
    # Sentinel timing.
    "down_after_negative": (
        {"node2": {"sentinel_down_after_milliseconds": -5}},
        "sentinel_down_after_milliseconds is -5 on node2",
    ),
    "down_after_not_a_number": (
        {"everywhere": {"sentinel_down_after_milliseconds": "5s"}},
        "sentinel_down_after_milliseconds is '5s' on node1, node2, node3: set it to a whole number of milliseconds",
    ),
    "failover_timeout_zero": ({"everywhere": {"sentinel_failover_timeout": 0}}, "sentinel_failover_timeout is 0 on"),
    "parallel_syncs_zero": (
        {"everywhere": {"sentinel_parallel_syncs": 0}},
        "sentinel_parallel_syncs is 0 on node1, node2, node3: set it to a whole number of at least 1",
    ),
    # Memory.
    "maxmemory_negative": ({"node2": {"redis_maxmemory_mb": -1}}, "redis_maxmemory_mb is -1 on node2"),
    "maxmemory_fraction": ({"node2": {"redis_maxmemory_mb": 511.5}}, "redis_maxmemory_mb is 511.5 on node2"),
    "maxmemory_words": ({"node2": {"redis_maxmemory_mb": "half"}}, "redis_maxmemory_mb is 'half' on node2"),
    "evicting_policy_on_one_host": (
        {"node2": {"redis_maxmemory_policy": "volatile-ttl", "redis_allow_eviction": "no"}},
        "redis_maxmemory_policy is volatile-ttl on node2: RQ loses jobs",
    ),
    # Addresses.
    "loopback_address": (
        {"addresses": {"node1": "10.0.0.1", "node2": "127.0.1.1", "node3": "10.0.0.3"}},
        "Host node2 has address 127.0.1.1, a loopback address: the other nodes cannot reach it there",
    ),
    "ipv6_loopback_address": (
        {"addresses": {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "::1"}},
        "Host node3 has address ::1, a loopback address",
    ),
    "ipv6_wildcard_address": (
        {"addresses": {"node1": "::", "node2": "10.0.0.2", "node3": "10.0.0.3"}},
        "Host node1 has address ::, a wildcard",
    ),
    "wildcard_in_bind_extra_addresses": (
        {"node2": {"redis_bind_extra_addresses": [ANY_IPV4]}},
        "redis_bind_extra_addresses lists 0.0.0.0, a wildcard, on node2: Redis would listen on every interface",
    ),
    "redis_star_in_bind_extra_addresses": (
        {"everywhere": {"redis_bind_extra_addresses": ["-::*"]}},
        "redis_bind_extra_addresses lists -::*, a wildcard, on node1, node2, node3",
    ),
    "ipv6_wildcard_in_bind_extra_addresses": (
        {"node2": {"redis_bind_extra_addresses": ["::"]}},
        "redis_bind_extra_addresses lists ::, a wildcard, on node2",
    ),
    "ipv6_loopback_in_bind_extra_addresses": (
        {"node2": {"redis_bind_extra_addresses": ["::1"]}},
        "redis_bind_extra_addresses lists ::1, a loopback address, on node2",
    ),
    "hostname_in_bind_extra_addresses": (
        {"node2": {"redis_bind_extra_addresses": ["db.example.com"]}},
        "redis_bind_extra_addresses lists 'db.example.com', which is not an IP address, on node2",
    ),
    "bind_extra_addresses_not_a_list": (
        {"node2": {"redis_bind_extra_addresses": "10.0.1.2"}},
        "redis_bind_extra_addresses is '10.0.1.2' on node2: make it a list",
    ),
    # Replicas and databases.
    "negative_replicas_to_write": (
        {"everywhere": {"redis_min_replicas_to_write": -1}},
        "redis_min_replicas_to_write is -1 on node1, node2, node3: set it to a whole number from 0 (off)",
    ),
    "app_db_negative": ({"app_db": -1}, "redis_ha_app_db is -1 but redis_databases is 16 on node1, node2, node3"),
    "app_db_beyond_fewer_databases": (
        {"app_db": 4, "everywhere": {"redis_databases": 4}},
        "redis_ha_app_db is 4 but redis_databases is 4 on node1, node2, node3: databases are numbered 0 to 3",
    ),
    "app_db_not_a_number": ({"app_db": "jobs"}, "redis_ha_app_db is 'jobs' but redis_databases is 16"),
    "no_databases": ({"node2": {"redis_databases": 0}}, "redis_databases is 0 on node2: set it to a whole number"),
    # Extra config.
    "debug_command": (
        {"everywhere": {"redis_extra_config": {"enable-debug-command": "local"}}},
        "redis_extra_config sets 'enable-debug-command local' on node1, node2, node3, which lets clients run DEBUG",
    ),
    "protected_configs": (
        {"node2": {"redis_extra_config": {"enable-protected-configs": True}}},
        "redis_extra_config sets 'enable-protected-configs yes' on node2",
    ),
    "module_command": (
        {"node2": {"redis_extra_config": {"enable-module-command": "yes"}}},
        "redis_extra_config sets 'enable-module-command yes' on node2, which lets clients load modules",
    ),
    "rename_command": (
        {"node2": {"redis_extra_config": {"rename-command": "CONFIG b840fc02d524045429941cc15f59e41cb7be6c52"}}},
        "redis_extra_config sets 'rename-command' on node2, which renames a command Sentinel and the kit call",
    ),
    "rename_command_in_the_key": (
        {"node2": {"redis_extra_config": {"rename-command REPLICAOF": '""'}}},
        "redis_extra_config sets 'rename-command' on node2",
    ),
    "requirepass": (
        {"node2": {"redis_extra_config": {"requirepass": "hunter2-hunter2-hunter2"}}},
        "redis_extra_config sets 'requirepass' on node2, which is set by the kit (ACL file and the "
        "redis_*_password variables)",
    ),
    "aclfile": ({"node2": {"redis_extra_config": {"aclfile": "/tmp/acl"}}}, "sets 'aclfile' on node2"),
    "masterauth": ({"node2": {"redis_extra_config": {"masterauth": "x"}}}, "sets 'masterauth' on node2"),
    "masteruser": ({"node2": {"redis_extra_config": {"MasterUser": "x"}}}, "sets 'masteruser' on node2"),
    "user": ({"node2": {"redis_extra_config": {"user": "bob on >pw ~* +@all"}}}, "sets 'user' on node2"),
    "bind": (
        {"node2": {"redis_extra_config": {"bind": ANY_IPV4}}},
        "sets 'bind' on node2, which is set by the kit (use redis_ha_address and redis_bind_extra_addresses)",
    ),
    "port": (
        {"node2": {"redis_extra_config": {"port": 6380}}},
        "sets 'port' on node2, which is set by the kit (use redis_ha_redis_port)",
    ),
    "tls_port": ({"node2": {"redis_extra_config": {"tls-port": 6380}}}, "sets 'tls-port' on node2"),
    "directive_with_a_line_break": (
        {"node2": {"redis_extra_config": {"maxclients": "100\nprotected-mode no"}}},
        "redis_extra_config's 'maxclients' holds a line break on node2: write one directive per key.",
    ),
    "extra_config_not_a_dict": (
        {"node2": {"redis_extra_config": ["protected-mode no"]}},
        "redis_extra_config is ['protected-mode no'] on node2: make it a dict",
    ),
    # Group sizes.
    "no_redis_node": ({"redis_hosts": []}, "Group 'redis' is empty: list the Redis nodes"),
    # Passwords.
    "digits_only": (
        {"passwords": {**GOOD_PASSWORDS, "redis_app_password": "1" * 20}},
        "redis_app_password is weak",
    ),
    "one_kind_of_character": (
        {"passwords": {**GOOD_PASSWORDS, "redis_app_password": "abcdefghijklmnopqrst"}},
        "redis_app_password is weak",
    ),
    "few_characters_repeated": (
        {"passwords": {**GOOD_PASSWORDS, "redis_app_password": "aB1aB1aB1aB1aB1aB1"}},
        "redis_app_password is weak",
    ),
    "sentinel_app_password_missing": (
        {"passwords": {k: v for k, v in GOOD_PASSWORDS.items() if k != "sentinel_app_password"}},
        "sentinel_app_password is missing or empty: it is new in this version (the read-only Sentinel user of the "
        "apps and the Sentinel exporter); generate one with",
    ),
    "placeholder_inside": (
        {"passwords": {**GOOD_PASSWORDS, "sentinel_peer_password": "please-changeme-0123"}},
        "sentinel_peer_password still holds a placeholder",
    ),
    "placeholder_of_another_spelling": (
        {"passwords": {**GOOD_PASSWORDS, "redis_exporter_password": "Replace-Me-With-A-Secret-1"}},
        "redis_exporter_password still holds a placeholder",
    ),
    # Controller outputs: the default follows the playbook, which may be inside an installed collection.
    "deploy_dir_inside_an_installed_collection": (
        {"deploy_dir": "/home/ops/.ansible/collections/ansible_collections/redis_ha_kit/redis_ha/.deploy/prod"},
        "redis_ha_deploy_dir is /home/ops/.ansible/collections/ansible_collections/redis_ha_kit/redis_ha/.deploy/prod, "
        "inside an installed Ansible collection",
    ),
    # TLS.
    "tls_without_a_ca": (
        {"everywhere": {"redis_ha_tls": True, "redis_ha_tls_cert_src": "/c/n.crt", "redis_ha_tls_key_src": "/c/n.key"}},
        "redis_ha_tls is true but redis_ha_tls_ca_src is empty on node1, node2, node3: set it (in group_vars/all) to "
        "the CA certificate",
    ),
    "tls_on_some_hosts_only": (
        {"everywhere": {"redis_ha_tls": True}, "node2": {"redis_ha_tls": "false"}},
        "redis_ha_tls is true on node1, node3 but false on node2: set it once, in group_vars/all.",
    ),
}


@pytest.mark.parametrize("case", sorted(UNIT_CASES))
def test_each_problem_names_the_variable_and_the_fix(case: str) -> None:
    changes, message = UNIT_CASES[case]
    found = problems(**changes)
    assert any(message in problem for problem in found), found


def test_a_password_problem_never_quotes_the_password() -> None:
    values = {"redis_app_password": "CHANGE_ME", "redis_admin_password": "x" * 20, "sentinel_password": "short"}
    found = problems(passwords={**GOOD_PASSWORDS, **values})
    assert len(found) == 3, found
    for value in values.values():
        assert not any(value in problem for problem in found), found


def test_a_problem_on_every_host_is_one_sentence_naming_them_all() -> None:
    found = problems(everywhere={"redis_ha_sentinel_port": 6379})
    assert found == [
        "redis_ha_sentinel_port and redis_ha_redis_port are both 6379 on node1, node2, node3: give every service on "
        "a host its own port."
    ]


def test_a_sentinel_only_host_may_reuse_the_redis_port() -> None:
    """Only the ports of what a host runs collide: a Sentinel-only host runs no Redis."""
    hosts = {host: dict(HOST_DEFAULTS) for host in [*HOSTS, "witness"]}
    hosts["witness"]["redis_ha_sentinel_port"] = 6379
    found = problems(
        sentinel_hosts=["node1", "node2", "witness"],
        addresses={"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3", "witness": "10.0.0.4"},
        hosts=hosts,
    )
    assert found == []


def test_safe_extra_config_and_the_override_pass() -> None:
    safe = {"protected-mode": "yes", "enable-debug-command": "no", "lazyfree-lazy-eviction": "yes"}
    assert problems(everywhere={"redis_extra_config": safe}) == []
    unsafe = {"protected-mode": "no", "rename-command CONFIG": '""', "bind": ANY_IPV4}
    assert problems(everywhere={"redis_extra_config": unsafe, "redis_extra_config_allow_unsafe": "yes"}) == []


def test_eviction_with_its_override_and_tls_with_every_file_pass() -> None:
    assert problems(everywhere={"redis_maxmemory_policy": "allkeys-lru", "redis_allow_eviction": True}) == []
    tls = {host: {**HOST_DEFAULTS, "redis_ha_tls": True} for host in HOSTS}
    for host in HOSTS:
        tls[host].update(
            redis_ha_tls_ca_src="/c/ca.crt",
            redis_ha_tls_cert_src=f"/c/{host}.crt",
            redis_ha_tls_key_src=f"{host}.key",
            redis_exporter_tls_cert_src=f"/c/{host}-exporter.crt",
            redis_exporter_tls_key_src=f"/c/{host}-exporter.key",
        )
    files = ["/c/ca.crt", *(f"/c/{host}.crt" for host in HOSTS), *(f"{host}.key" for host in HOSTS)]
    files += [f"/c/{host}-exporter.{kind}" for host in HOSTS for kind in ("crt", "key")]
    assert problems(hosts=tls, tls_files_found=files) == []


def test_per_host_problems_are_all_reported_together() -> None:
    found = problems(
        node2={"redis_ha_redis_port": 26379, "redis_maxmemory_mb": "2g", "redis_extra_config": {"port": 1}},
        everywhere={"sentinel_parallel_syncs": 0},
        app_db=99,
        redis_hosts=["node1", "node2"],
        addresses={"node1": "10.0.0.1", "node2": ANY_IPV4, "node3": "10.0.0.3"},
    )
    assert len(found) == 6, found


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"redis_acl_app_channels": ["rq:*", "*"]}, "channel pattern(s) * on node1, node2, node3, which match"),
        ({"redis_acl_app_channels": ["__sentinel__:*"]}, "channel pattern(s) __sentinel__:* on"),
        ({"redis_acl_app_rules": "~* &* +@all"}, "channel pattern(s) * on"),
        ({"redis_acl_app_rules": "~* allchannels +@all"}, "channel pattern(s) * on"),
        (
            {"redis_acl_app_channels": "rq:*"},
            "redis_acl_app_channels is 'rq:*' on node1, node2, node3: set it to a list",
        ),
    ],
)
def test_the_app_may_never_reach_sentinels_hello_channel(change: dict[str, Any], message: str) -> None:
    found = problems(change)
    assert any(message in problem for problem in found), found


def test_the_exporters_may_not_present_the_nodes_server_key() -> None:
    same = {
        "redis_ha_tls": True,
        "redis_ha_tls_key_src": "/pki/node.key",
        "redis_exporter_tls_key_src": "/pki/node.key",
    }
    found = problems(same, tls=True)
    assert any("redis_exporter_tls_key_src is the node's own server key on node1" in p for p in found), found
