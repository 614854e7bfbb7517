"""Every role template rendered with representative values: the lines that matter are there."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.conftest import (
    GOOD_PASSWORDS,
    PLAYBOOKS,
    cluster_hosts,
    render_templates,
    write_inventory,
)

BASE_VARS: dict[str, Any] = {
    **GOOD_PASSWORDS,
    "redis_ha_master_address": "10.1.0.12",
    "redis_maxmemory_mb": 2048,
    "redis_ha_environment": "staging",
}


def render(tmp_path: Path, **overrides: Any) -> dict[str, str]:
    """Render all templates for localhost, which plays node1 of a three-node cluster."""
    hosts = cluster_hosts()
    # localhost stands in for node1 (redis + sentinel); node2/node3 are never contacted.
    hosts["redis"]["hosts"]["localhost"] = hosts["redis"]["hosts"].pop("node1")
    hosts["redis"]["hosts"]["localhost"]["ansible_connection"] = "local"
    hosts["redis"]["hosts"]["localhost"]["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
    hosts["sentinel"]["hosts"]["localhost"] = hosts["sentinel"]["hosts"].pop("node1")
    inventory = write_inventory(tmp_path / "inventory", hosts, {})
    return render_templates(PLAYBOOKS / "render.yml", inventory, {**BASE_VARS, **overrides}, tmp_path)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("render"))


@pytest.fixture(scope="module")
def rendered_tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(tmp_path_factory.mktemp("render_tls"), redis_ha_tls=True, redis_ha_master_address="10.1.0.11")


def lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_every_template_starts_with_the_ansible_managed_header(rendered: dict[str, str]) -> None:
    # ACL and JSON files cannot hold comments; Redis refuses to load them otherwise.
    for name, text in rendered.items():
        if name in {"users.acl"} or name.endswith(".json"):
            assert not text.startswith("#"), name
        else:
            assert text.startswith("#\n# Ansible managed"), name


def test_redis_persists_with_aof_fsynced_every_second_and_rdb(rendered: dict[str, str]) -> None:
    conf = lines(rendered["redis.conf"])
    assert "appendonly yes" in conf
    assert "appendfsync everysec" in conf
    assert "save 3600 1 300 100 60 10000" in conf


def test_redis_refuses_writes_rather_than_evicting_jobs(rendered: dict[str, str]) -> None:
    conf = lines(rendered["redis.conf"])
    assert "maxmemory-policy noeviction" in conf
    assert "maxmemory 2gb" in conf


def test_redis_binds_the_private_address_and_loopback_only(rendered: dict[str, str]) -> None:
    conf = lines(rendered["redis.conf"])
    assert [line for line in conf if line.startswith("bind ")] == ["bind 10.1.0.11 127.0.0.1"]
    assert "protected-mode yes" in conf
    assert "port 6379" in conf


def test_redis_announces_itself_and_needs_a_replica_in_sync_to_accept_writes(rendered: dict[str, str]) -> None:
    conf = lines(rendered["redis.conf"])
    assert "replica-announce-ip 10.1.0.11" in conf
    assert "min-replicas-to-write 1" in conf
    assert "min-replicas-max-lag 10" in conf
    assert "masteruser replication" in conf
    assert f'masterauth "{GOOD_PASSWORDS["redis_replication_password"]}"' in conf


def test_a_new_replica_follows_the_discovered_master(rendered: dict[str, str], rendered_tls: dict[str, str]) -> None:
    assert "replicaof 10.1.0.12 6379" in lines(rendered["redis.conf"])
    # The node that is master itself gets no replicaof line.
    assert not [line for line in lines(rendered_tls["redis.conf"]) if line.startswith("replicaof")]


def test_acl_file_disables_default_user_and_stores_only_password_hashes(rendered: dict[str, str]) -> None:
    acl = rendered["users.acl"]
    users = {line.split()[1]: line for line in lines(acl)}
    assert set(users) == {"default", "admin", "app", "replication", "sentinel", "exporter", "backup"}
    assert " off " in users["default"]
    # No redis_backup_password (backups off): the backup user exists, disabled, with no command.
    assert users["backup"].endswith("reset off resetpass -@all")
    # nopass on the default user keeps protected mode refusing remote clients.
    assert "nopass" not in users["default"]
    for password in GOOD_PASSWORDS.values():
        assert password not in acl
    assert re.search(r" #[0-9a-f]{64} ", users["app"])
    assert "-@admin -@dangerous +info +role" in users["app"]
    # The app's pub/sub is RQ's channels only: no &* that would let it forge Sentinel hello messages.
    assert users["app"].endswith("resetchannels &rq:*")
    assert "&*" not in users["app"] and "allchannels" not in users["app"]
    assert "resetchannels -@all +psync +replconf +ping" in users["replication"]
    assert "&__sentinel__:hello" in users["sentinel"]
    assert "+config|get" not in users["exporter"]


def test_tls_closes_the_plain_port_and_encrypts_replication(rendered_tls: dict[str, str]) -> None:
    conf = lines(rendered_tls["redis.conf"])
    assert "port 0" in conf
    assert "tls-port 6379" in conf
    assert "tls-replication yes" in conf
    sentinel = lines(rendered_tls["sentinel.conf"])
    assert "port 0" in sentinel
    assert "tls-port 26379" in sentinel
    assert "-redis.addr=rediss://10.1.0.11:6379" in rendered_tls["exporter-redis.exporter.args"]
    # The exporter (user prometheus) reads its own copy of the CA: the node's TLS directory is Redis's.
    assert "-tls-ca-cert-file=/etc/redis-exporter/tls/ca.crt" in rendered_tls["exporter-sentinel.exporter.args"]


def test_systemd_drop_in_lets_redis_rewrite_its_config_and_raises_limits(rendered: dict[str, str]) -> None:
    drop_in = lines(rendered["redis-server.override.conf"])
    assert "ReadWritePaths=/etc/redis /var/lib/redis" in drop_in
    assert "LimitNOFILE=65535" in drop_in
    # Twice Sentinel's default down-after (5000 ms): a crashed master is failed over before it restarts.
    assert "RestartSec=10" in drop_in
    assert "ConditionVirtualization=!container" in rendered["disable-transparent-hugepages.service"]


def test_sentinel_monitors_the_master_with_quorum_and_authenticates_both_ways(rendered: dict[str, str]) -> None:
    conf = lines(rendered["sentinel.conf"])
    assert "sentinel monitor mymaster 10.1.0.12 6379 2" in conf
    assert "sentinel auth-user mymaster sentinel" in conf
    assert f'sentinel auth-pass mymaster "{GOOD_PASSWORDS["redis_sentinel_password"]}"' in conf
    assert f'requirepass "{GOOD_PASSWORDS["sentinel_password"]}"' in conf
    # Sentinels log into each other as the peer user, never with the admin (default user's) password.
    assert "sentinel sentinel-user sentinel-peer" in conf
    assert f'sentinel sentinel-pass "{GOOD_PASSWORDS["sentinel_peer_password"]}"' in conf
    users = {line.split()[1]: line for line in conf if line.startswith("user ")}
    assert sorted(users) == ["app", "sentinel-peer"]
    assert "+publish" not in users["app"] and "+sentinel|set" not in users["app"]
    assert "&__sentinel__:hello" in users["sentinel-peer"]
    for password in GOOD_PASSWORDS.values():
        assert f"{password}" not in " ".join(users.values())
    assert "sentinel announce-ip 10.1.0.11" in conf
    assert "sentinel down-after-milliseconds mymaster 5000" in conf
    assert "bind 10.1.0.11 127.0.0.1" in conf


def test_exporters_read_passwords_from_files_never_from_the_unit(rendered: dict[str, str]) -> None:
    unit = rendered["redis-exporter@.service"]
    assert not [line for line in lines(unit) if line.startswith("Environment=")]
    assert "User=prometheus" in unit
    for name in ("exporter-redis.exporter.args", "exporter-sentinel.exporter.args"):
        for password in GOOD_PASSWORDS.values():
            assert password not in rendered[name]
    assert "-web.listen-address=10.1.0.11:9121" in rendered["exporter-redis.exporter.args"]
    assert "-web.listen-address=10.1.0.11:9355" in rendered["exporter-sentinel.exporter.args"]
    assert "-redis.user=exporter" in rendered["exporter-redis.exporter.args"]
    assert "-config-command=-" in rendered["exporter-redis.exporter.args"]
    # Keyed by the address alone (exporter 1.45, Debian 12) and with the user (1.69, Debian 13).
    assert yaml.safe_load(rendered["exporter-redis.exporter.password.json"]) == {
        "redis://10.1.0.11:6379": GOOD_PASSWORDS["redis_exporter_password"],
        "redis://exporter@10.1.0.11:6379": GOOD_PASSWORDS["redis_exporter_password"],
    }
    # The Sentinel exporter logs in as Sentinel's read-only app user, never as its admin.
    assert "-redis.user=app" in rendered["exporter-sentinel.exporter.args"]
    assert yaml.safe_load(rendered["exporter-sentinel.exporter.password.json"]) == {
        "redis://10.1.0.11:26379": GOOD_PASSWORDS["sentinel_app_password"],
        "redis://app@10.1.0.11:26379": GOOD_PASSWORDS["sentinel_app_password"],
    }


def test_env_file_holds_everything_an_app_needs(rendered: dict[str, str], rendered_tls: dict[str, str]) -> None:
    env = dict(line.split("=", 1) for line in lines(rendered["redis-ha.env"]))
    assert env["REDIS_SENTINELS"] == "'10.1.0.11:26379,10.1.0.12:26379,10.1.0.13:26379'"
    assert env["REDIS_MASTER_NAME"] == "'mymaster'"
    assert env["REDIS_USERNAME"] == "'app'"
    assert env["REDIS_PASSWORD"] == f"'{GOOD_PASSWORDS['redis_app_password']}'"
    assert env["REDIS_SENTINEL_USERNAME"] == "'app'"
    assert env["REDIS_SENTINEL_PASSWORD"] == f"'{GOOD_PASSWORDS['sentinel_app_password']}'"
    assert GOOD_PASSWORDS["sentinel_password"] not in rendered["redis-ha.env"]
    assert env["REDIS_DB"] == "'0'"
    assert "REDIS_TLS" not in env
    tls_env = dict(line.split("=", 1) for line in lines(rendered_tls["redis-ha.env"]))
    assert tls_env["REDIS_TLS"] == "'1'"
    assert {"REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"} <= set(tls_env)


def test_scrape_config_lists_every_exporter(rendered: dict[str, str]) -> None:
    jobs = {job["job_name"]: job for job in yaml.safe_load(rendered["prometheus-scrape.yml"])}
    assert jobs["redis-ha-staging-redis"]["static_configs"][0]["targets"] == [
        "10.1.0.11:9121",
        "10.1.0.12:9121",
        "10.1.0.13:9121",
    ]
    assert jobs["redis-ha-staging-sentinel"]["static_configs"][0]["targets"] == [
        "10.1.0.11:9355",
        "10.1.0.12:9355",
        "10.1.0.13:9355",
    ]
