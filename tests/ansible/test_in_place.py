"""The deploy's quick path: what a stamp must match, and when it stops holding.

The script runs here as Ansible runs it on a host (a real python3 process on real files); the
filters are the pure functions they are. The lab test (test_default.py) runs the whole path.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.ansible.conftest import REPO, cluster_hosts, load_plugin, run_playbook, write_inventory

SCRIPT = REPO / "roles" / "redis_ha" / "files" / "in_place.py"
in_place = load_plugin("in_place")


def run(*args: str, stdin: dict[str, Any] | None = None) -> Any:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text(), *args],
        input=json.dumps(stdin) if stdin is not None else None,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def check(state: Path, digest: str, action: str = "check") -> dict[str, list[str]]:
    answer: dict[str, list[str]] = json.loads(run(action, str(state), digest))
    return answer


def test_a_stamp_holds_while_its_files_are_unchanged_and_its_markers_absent(tmp_path: Path) -> None:
    state, conf, marker = tmp_path / "state", tmp_path / "unit.conf", tmp_path / "restart-pending"
    conf.write_text("[Service]\nLimitNOFILE=65536\n")
    holds = {"files": [str(conf)], "units": [], "absent": [str(marker)]}
    assert run("record", str(state), "redis", "d1", stdin=holds) == "recorded"
    assert run("record", str(state), "redis", "d1", stdin=holds) == "unchanged"
    assert (state / "redis.json").stat().st_mode & 0o077 == 0, "a stamp is root-only"
    assert check(state, "d1") == {"in_place": ["redis"], "removed": []}

    marker.write_text("restart pending\n")
    assert check(state, "d1", "keep") == {"in_place": [], "removed": []}, "check mode removes nothing"
    assert (state / "redis.json").exists()
    marker.unlink()

    conf.write_text("[Service]\nLimitNOFILE=1024\n")  # edited by hand
    assert check(state, "d1") == {"in_place": [], "removed": ["redis"]}
    assert not (state / "redis.json").exists(), "a stamp that no longer holds is removed at once"


def test_a_new_fingerprint_removes_every_stamp_and_forget_does_too(tmp_path: Path) -> None:
    state, conf = tmp_path / "state", tmp_path / "a.conf"
    conf.write_text("x\n")
    for part in ("redis", "sentinel"):
        run("record", str(state), part, "d1", stdin={"files": [str(conf)], "units": [], "absent": []})
    assert check(state, "d2") == {"in_place": [], "removed": ["redis", "sentinel"]}

    run("record", str(state), "redis", "d1", stdin={"files": [], "units": [], "absent": []})
    assert json.loads(run("forget", str(state))) == {"removed": ["redis"]}
    assert json.loads(run("forget", str(tmp_path / "never-deployed"))) == {"removed": []}


def test_a_unit_that_does_not_run_breaks_the_stamp(tmp_path: Path) -> None:
    state = tmp_path / "state"
    holds = {"files": [], "units": ["redis-ha-kit-test-no-such-unit.service"], "absent": []}
    run("record", str(state), "redis_exporter", "d1", stdin=holds)
    assert check(state, "d1")["in_place"] == []


def test_recording_a_file_that_is_missing_fails_and_says_which(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text(), "record", str(tmp_path), "backup", "d1"],
        input=json.dumps({"files": [str(tmp_path / "config.json")]}),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "config.json" in proc.stderr


GROUPS = {"redis": ["r1", "r2"], "sentinel": ["r1", "r2"], "backup": ["b1"], "app": ["a1", "m1"], "monitoring": ["m1"]}
NODE_PARTS = ["backup", "redis", "redis_exporter", "sentinel"]


def checks(**in_place_by_host: list[str]) -> dict[str, str]:
    return {host: json.dumps({"in_place": parts, "removed": []}) for host, parts in in_place_by_host.items()}


def test_a_node_with_every_part_in_place_is_left_out_of_the_node_play_too() -> None:
    answers = checks(r1=NODE_PARTS, r2=NODE_PARTS, b1=["backup"], a1=["redis_ha_app"])
    together = {"backup": ["redis", "backup"]}
    assert in_place.redis_ha_parts_in_place(answers, "r1", GROUPS, together, []) == [*NODE_PARTS, "node"]
    assert in_place.redis_ha_parts_in_place(answers, "a1", GROUPS, together, []) == ["redis_ha_app"]


def test_a_monitoring_host_with_prometheus_in_place_is_left_out_of_the_node_play() -> None:
    """discover.yml prepares monitoring hosts too (site.yml deploys them under strategy free later)."""
    answers = checks(m1=["alertmanager", "monitoring", "redis_ha_app"])
    assert in_place.redis_ha_parts_in_place(answers, "m1", GROUPS, {}, []) == [
        "alertmanager",
        "monitoring",
        "redis_ha_app",
        "node",
    ]
    answers = checks(m1=["monitoring", "redis_ha_app"])
    assert in_place.redis_ha_parts_in_place(answers, "m1", GROUPS, {}, []) == ["monitoring", "redis_ha_app"]


def test_backups_count_as_in_place_only_where_every_node_and_the_backup_host_has_them() -> None:
    """A node rebuilt with a new SSH key: the backup host must authorize it, though its own part is unchanged."""
    answers = checks(r1=NODE_PARTS, r2=["redis", "redis_exporter", "sentinel"], b1=["backup"])
    together = {"backup": ["redis", "backup"]}
    assert in_place.redis_ha_parts_in_place(answers, "b1", GROUPS, together, []) == []
    assert in_place.redis_ha_parts_in_place(answers, "r1", GROUPS, together, []) == [
        "redis",
        "redis_exporter",
        "sentinel",
    ]


def test_a_part_kept_at_the_latest_package_is_never_skipped() -> None:
    answers = checks(r1=NODE_PARTS, r2=NODE_PARTS)
    assert in_place.redis_ha_parts_in_place(answers, "r1", GROUPS, {}, ["redis"]) == [
        "backup",
        "redis_exporter",
        "sentinel",
    ]


def test_the_inventory_fingerprint_follows_the_cluster_not_the_run(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("first CA\n")
    hostvars = {
        "r1": {"ansible_host": "10.0.0.1", "redis_admin_password": "s3cret", "redis_ha_tls_ca_src": str(ca)},
        "a1": {"ansible_host": "10.0.0.9"},
    }
    base = in_place.redis_ha_inventory_digest(["r1", "a1"], hostvars)
    assert "s3cret" not in base

    run_only = {
        host: {**values, "ansible_verbosity": 3, "playbook_dir": "/elsewhere", "redis_ha_full_deploy": True}
        for host, values in hostvars.items()
    }
    assert in_place.redis_ha_inventory_digest(["a1", "r1"], run_only) == base, "how it is run is not the cluster"

    rotated = {**hostvars, "r1": {**hostvars["r1"], "redis_admin_password": "n3w"}}
    assert in_place.redis_ha_inventory_digest(["r1", "a1"], rotated) != base

    ca.write_text("renewed CA, same path\n")
    assert in_place.redis_ha_inventory_digest(["r1", "a1"], hostvars) != base


def test_the_kit_fingerprint_follows_its_files(tmp_path: Path) -> None:
    role = tmp_path / "roles" / "redis" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("---\n")
    (role / "__pycache__").mkdir()
    before = in_place.redis_ha_tree_digest([str(tmp_path / "roles"), str(tmp_path / "absent")])
    (role / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert in_place.redis_ha_tree_digest([str(tmp_path / "roles")]) == before
    (role / "main.yml").write_text("---\n- name: changed\n")
    assert in_place.redis_ha_tree_digest([str(tmp_path / "roles")]) != before


def test_the_fingerprint_takes_variables_that_read_other_hosts_variables(tmp_path: Path) -> None:
    """A value templated from hostvars (an alert receiver's URL, say) cannot be resolved with one
    host's variables alone: real Ansible computes the fingerprint, which follows the value's text."""
    playbook = tmp_path / "fingerprint.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.debug:\n"
        "        msg: \"fingerprint={{ groups['all'] | redis_ha_inventory_digest(hostvars) }}\"\n"
    )

    def fingerprint(port: int) -> str:
        url = "http://{{ hostvars['node1'].ansible_host }}:" + str(port) + "/"
        inventory = write_inventory(
            tmp_path / f"inv{port}", cluster_hosts(), {"alertmanager_receivers": [{"name": "hook", "webhook_url": url}]}
        )
        result = run_playbook(playbook, inventory)
        assert result.ok, result.output
        found = re.search(r"fingerprint=([0-9a-f]{64})", result.output)
        assert found, result.output
        return found.group(1)

    assert fingerprint(9095) == fingerprint(9095)
    assert fingerprint(9095) != fingerprint(9096), "a changed receiver URL is a changed inventory"
