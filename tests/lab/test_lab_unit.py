"""The lab's pure parts: parsing, naming, state files. Nothing here boots or touches the network."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
from pathlib import Path

import pytest

from tests.lab import lab

NET = ipaddress.IPv4Network("10.147.29.0/24")


def test_default_hosts_get_consecutive_addresses_from_dot_11() -> None:
    hosts = lab.parse_hosts("redis1,redis2,redis3,app1", NET)
    assert [(h.name, str(h.ip)) for h in hosts] == [
        ("redis1", "10.147.29.11"),
        ("redis2", "10.147.29.12"),
        ("redis3", "10.147.29.13"),
        ("app1", "10.147.29.14"),
    ]


def test_hosts_accept_an_explicit_address() -> None:
    hosts = lab.parse_hosts("redis1=10.147.29.40, redis2", NET)
    assert [str(h.ip) for h in hosts] == ["10.147.29.40", "10.147.29.12"]


def test_host_problems_are_reported_together() -> None:
    with pytest.raises(lab.LabError) as exc:
        lab.parse_hosts("Bad_Name,redis1=10.147.30.5,redis2=10.147.29.1,redis3,redis3", NET)
    message = str(exc.value)
    assert "'Bad_Name' is not valid" in message
    assert "10.147.30.5 is not a host address of 10.147.29.0/24" in message
    assert "10.147.29.1 is the bridge's own address" in message
    assert "host redis3 is listed more than once" in message


def test_empty_host_list_is_refused() -> None:
    with pytest.raises(lab.LabError, match="names no host"):
        lab.parse_hosts(" , ", NET)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("10.147.29.5/24", "not an IPv4 network"),
        ("10.147.29.0/30", "between /16 and /29"),
        ("8.8.8.0/24", "private range"),
        ("fd00::/64", "not an IPv4 network"),
        ("banana", "not an IPv4 network"),
    ],
)
def test_bad_subnets_are_refused_with_the_reason(text: str, error: str) -> None:
    with pytest.raises(lab.LabError, match=error):
        lab.parse_subnet(text)


def test_subnet_parses() -> None:
    assert lab.parse_subnet("10.147.30.0/24") == ipaddress.IPv4Network("10.147.30.0/24")


@pytest.mark.parametrize("name", ["rhk", "m1", "abcdefghij"])
def test_valid_lab_names(name: str) -> None:
    assert lab.validate_lab_name(name) == name


@pytest.mark.parametrize("name", ["", "1lab", "Lab", "my-lab", "abcdefghijk"])
def test_invalid_lab_names(name: str) -> None:
    with pytest.raises(lab.LabError, match="lab name"):
        lab.validate_lab_name(name)


def test_bridge_name_must_fit_an_interface_name() -> None:
    assert lab.validate_bridge_name("rhkbr0") == "rhkbr0"
    with pytest.raises(lab.LabError, match="not a valid interface name"):
        lab.validate_bridge_name("a-very-long-bridge-name")


def test_siphash24_matches_the_reference_vectors() -> None:
    # Reference implementation's vectors: key 00..0f, message 00..(n-1).
    key = bytes(range(16))
    assert lab.siphash24(key, b"") == 0x726FDB47DD0E0E31
    assert lab.siphash24(key, bytes(range(8))) == 0x93F5F5799A932462
    assert lab.siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5


def test_short_veth_names_are_kept() -> None:
    assert lab.veth_name("rhk-redis1") == "vb-rhk-redis1"
    assert lab.veth_name("rhk-app1") == "vb-rhk-app1"
    # 15 bytes is the longest name the kernel takes.
    assert lab.veth_name("abcdefghijkl") == "vb-abcdefghijkl"


def test_long_veth_names_are_shortened_like_systemd_nspawn() -> None:
    # Observed from systemd-nspawn 252 on Debian 12 (see the lab's boot test).
    name = lab.veth_name("rhklongname-redis1")
    assert len(name) == 15
    assert name.startswith("vb-rhklongn")
    assert name == lab.shorten_ifname("vb-rhklongname-redis1")
    assert lab.veth_name("rhklongname-redis1") != lab.veth_name("rhklongname-redis2")
    # The name systemd-nspawn 252 gave the boot test's host (its altname is vb-rhktestlab-redis1).
    assert lab.veth_name("rhktestlab-redis1") == "vb-rhktestlUKzY"


def test_lab_nspawn_is_recognised_only_by_machine_and_root() -> None:
    root = Path("/var/lib/redis-ha-kit/rhk/machines/redis1/root")
    argv = ["systemd-nspawn", "-q", "-D", str(root), "--boot", "--machine=rhk-redis1"]
    assert lab.is_lab_nspawn(argv, "rhk-redis1", root)
    assert lab.is_lab_nspawn(["/usr/bin/systemd-nspawn", *argv[1:]], "rhk-redis1", root)
    assert not lab.is_lab_nspawn(argv, "rhk-redis2", root)
    assert not lab.is_lab_nspawn(argv, "rhk-redis1", root.parent)
    assert not lab.is_lab_nspawn(["sleep", "-D", str(root), "--machine=rhk-redis1"], "rhk-redis1", root)
    assert not lab.is_lab_nspawn([], "rhk-redis1", root)


def test_subnet_conflicts_ignore_default_route_and_own_bridge() -> None:
    routes = [
        {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
        {"dst": "192.0.2.0/24", "dev": "eth0"},
        {"dst": "10.147.29.0/24", "dev": "rhkbr0"},
        {"dst": "10.147.29.1", "dev": "rhkbr0", "table": "local", "type": "local"},
    ]
    assert lab.subnet_conflicts(routes, NET, "rhkbr0") == []


def test_subnet_conflicts_name_the_overlapping_route() -> None:
    routes = [{"dst": "10.147.0.0/16", "dev": "wg0"}, {"dst": "10.147.29.7", "dev": "tun0", "table": "local"}]
    assert lab.subnet_conflicts(routes, NET, "rhkbr0") == [
        "10.147.0.0/16 via wg0 (table main)",
        "10.147.29.7 via tun0 (table local)",
    ]


def _state() -> lab.LabState:
    return lab.LabState(
        name="rhk",
        bridge="rhkbr0",
        subnet="10.147.29.0/24",
        suite="bookworm",
        image="/var/cache/redis-ha-kit/images/bookworm",
        apt_repo="/var/cache/redis-ha-kit/apt/bookworm",
        hosts={
            "redis1": lab.HostState(
                name="redis1",
                machine="rhk-redis1",
                ip="10.147.29.11",
                root="/var/lib/redis-ha-kit/rhk/machines/redis1/root",
                log="/x/logs/redis1.log",
                pid=1234,
                veth="vb-rhk-redis1",
            )
        },
    )


def test_state_file_round_trips(tmp_path: Path) -> None:
    state = _state()
    lab.save_state(tmp_path, state)
    assert lab.load_state(tmp_path) == state
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o644


def test_missing_state_file_means_no_lab(tmp_path: Path) -> None:
    assert lab.load_state(tmp_path) is None


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 99, "hosts": {}}', '{"version": 1, "hosts": {"a": {}}}'])
def test_broken_state_file_is_reported(tmp_path: Path, text: str) -> None:
    (tmp_path / "state.json").write_text(text)
    with pytest.raises(lab.LabError, match="state"):
        lab.load_state(tmp_path)


def test_running_lab_matches_the_config_that_started_it() -> None:
    config = lab.config_from_args(
        name="rhk", bridge=None, subnet=None, hosts="redis1", suite=None, state_dir="/tmp/x", environ={}
    )
    assert _state().fingerprint() == config.fingerprint()
    other = lab.config_from_args(
        name="rhk", bridge=None, subnet=None, hosts="redis1,redis2", suite=None, state_dir="/tmp/x", environ={}
    )
    assert _state().fingerprint() != other.fingerprint()


def test_default_lab_keeps_the_paths_the_inventory_reads() -> None:
    config = lab.config_from_args(
        name="rhk", bridge=None, subnet=None, hosts=None, suite=None, state_dir=None, environ={}
    )
    assert config.state_dir == lab.REPO_ROOT / ".lab"
    assert config.bridge == "rhkbr0"
    assert str(config.network) == "10.147.29.0/24"
    assert str(config.gateway) == "10.147.29.1"
    assert [h.name for h in config.hosts] == ["redis1", "redis2", "redis3", "app1"]
    assert config.machine("redis1") == "rhk-redis1"
    assert config.machine_dir("redis1") == Path("/var/lib/redis-ha-kit/rhk/machines/redis1")


def test_other_labs_keep_state_apart_and_need_their_own_network() -> None:
    config = lab.config_from_args(
        name="mol", bridge="rhkbr1", subnet="10.147.30.0/24", hosts=None, suite=None, state_dir=None, environ={}
    )
    assert config.state_dir == lab.REPO_ROOT / ".lab" / "labs" / "mol"
    assert str(config.hosts[0].ip) == "10.147.30.11"
    bare = lab.config_from_args(
        name="mol", bridge=None, subnet=None, hosts=None, suite=None, state_dir=None, environ={}
    )
    assert bare.bridge is None and bare.network is None


def _config_with_suite(suite: str | None, environ: dict[str, str]) -> lab.LabConfig:
    return lab.config_from_args(
        name="rhk", bridge=None, subnet=None, hosts=None, suite=suite, state_dir=None, environ=environ
    )


def test_suite_comes_from_the_environment_unless_given() -> None:
    assert _config_with_suite(None, {"LAB_SUITE": "trixie"}).suite == "trixie"
    assert _config_with_suite("bookworm", {"LAB_SUITE": "trixie"}).suite == "bookworm"
    assert _config_with_suite(None, {}).suite == "bookworm"
    with pytest.raises(lab.LabError, match="not supported"):
        _config_with_suite(None, {"LAB_SUITE": "sid"})


def test_repository_packages_add_valkey_on_trixie_only() -> None:
    assert "valkey-server" in lab.repo_packages("trixie")
    assert "valkey-server" not in lab.repo_packages("bookworm")
    assert set(lab.LAB_PACKAGES) <= set(lab.repo_packages("trixie"))


def test_network_file_sets_the_static_address_without_gateway() -> None:
    text = lab.render_network_file(ipaddress.IPv4Address("10.147.29.12"), NET)
    assert "Name=host0" in text
    assert "Address=10.147.29.12/24" in text
    assert "Gateway" not in text


def test_hosts_file_names_every_lab_host() -> None:
    text = lab.render_hosts_file(lab.parse_hosts("redis1,app1", NET))
    assert "10.147.29.11\tredis1\n" in text
    assert "10.147.29.12\tapp1\n" in text


def test_release_file_lists_index_checksums() -> None:
    now = datetime.datetime(2025, 5, 20, 12, 0, tzinfo=datetime.UTC)
    text = lab.render_release({"Packages": b"abc"}, suite="lab", now=now)
    assert f" {hashlib.sha256(b'abc').hexdigest()} 3 Packages" in text
    assert "Date: Tue, 20 May 2025 12:00:00 UTC" in text


def test_image_spec_changes_with_the_package_list() -> None:
    assert lab.image_spec("bookworm") != lab.image_spec("trixie")
    assert lab.image_spec("bookworm") == lab.image_spec("bookworm")


def test_write_file_sets_mode_atomically(tmp_path: Path) -> None:
    target = tmp_path / "secrets" / "pw"
    lab.write_file(target, "s3cret\n", mode=0o600)
    assert target.read_text() == "s3cret\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["pw"]


def test_cli_accepts_lab_options_after_the_command() -> None:
    args = lab.build_parser().parse_args(
        ["up", "--name", "mol", "--bridge", "rhkbr1", "--subnet", "10.147.30.0/24", "--hosts", "redis1"]
    )
    assert (args.command, args.name, args.bridge, args.subnet, args.hosts) == (
        "up",
        "mol",
        "rhkbr1",
        "10.147.30.0/24",
        "redis1",
    )
    exec_args = lab.build_parser().parse_args(["exec", "redis1", "--", "redis-cli", "-p", "6379", "ping"])
    assert exec_args.cmd == ["redis-cli", "-p", "6379", "ping"]


def test_lab_init_is_recognised_by_namespace_pid_and_marker() -> None:
    environ = b"PATH=/usr/bin\0container=systemd-nspawn\0container_uuid=x\0"
    status = "Name:\tsystemd\nPPid:\t1\nNSpid:\t1815\t1\n"
    marker = '{"lab": "rhk", "host": "redis2", "machine": "rhk-redis2"}'
    assert lab.is_lab_init(environ, status, marker, "rhk")
    assert not lab.is_lab_init(environ, status, marker, "mol")
    assert not lab.is_lab_init(b"PATH=/usr/bin\0", status, marker, "rhk")
    assert not lab.is_lab_init(environ, "NSpid:\t1815\t57\n", marker, "rhk")
    assert not lab.is_lab_init(environ, "NSpid:\t1\n", marker, "rhk")  # the machine's own init
    assert not lab.is_lab_init(environ, status, "not json", "rhk")


# -- one lab, several Debian releases: per-host suites --------------------------------------


def test_hosts_may_name_their_own_suite() -> None:
    hosts = lab.parse_hosts("redis1,redis2,new1@trixie,new2=10.147.29.31@trixie", NET)
    assert [(h.name, str(h.ip), h.suite) for h in hosts] == [
        ("redis1", "10.147.29.11", "bookworm"),
        ("redis2", "10.147.29.12", "bookworm"),
        ("new1", "10.147.29.13", "trixie"),
        ("new2", "10.147.29.31", "trixie"),
    ]


def test_hosts_without_a_suite_get_the_labs() -> None:
    hosts = lab.parse_hosts("a, b@bookworm ,c=10.147.29.40", NET, "trixie")
    assert [(h.name, h.suite) for h in hosts] == [("a", "trixie"), ("b", "bookworm"), ("c", "trixie")]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("redis1", ("redis1", None, None)),
        ("redis1=10.147.29.21", ("redis1", "10.147.29.21", None)),
        ("new1@trixie", ("new1", None, "trixie")),
        (" new2 = 10.147.29.31 @ trixie ", ("new2", "10.147.29.31", "trixie")),
        ("new3@", ("new3", None, "")),
    ],
)
def test_host_items_split_into_name_address_and_suite(item: str, expected: tuple[str, str | None, str | None]) -> None:
    assert lab.split_host_item(item) == expected


def test_unknown_suites_are_reported_with_the_other_host_problems() -> None:
    with pytest.raises(lab.LabError) as exc:
        lab.parse_hosts("Bad_Name,new1@sid,new2=10.147.30.5@trixie,new3@,redis1,redis1@trixie", NET)
    message = str(exc.value)
    assert "'Bad_Name' is not valid" in message
    assert "host new1: suite 'sid' is not supported: use one of bookworm, trixie" in message
    assert "host new3: suite '' is not supported" in message
    assert "10.147.30.5 is not a host address of 10.147.29.0/24" in message
    assert "host redis1 is listed more than once" in message


def _mixed_config(hosts: str = "old1,new1@trixie", suite: str | None = "bookworm") -> lab.LabConfig:
    return lab.config_from_args(
        name="hlpmix",
        bridge="rhkbrx9",
        subnet="10.147.90.0/24",
        hosts=hosts,
        suite=suite,
        state_dir="/tmp/x",
        environ={},
    )


def test_config_lists_the_suites_its_hosts_use() -> None:
    config = _mixed_config()
    assert config.suite == "bookworm"
    assert [(h.name, h.suite) for h in config.hosts] == [("old1", "bookworm"), ("new1", "trixie")]
    assert config.suites == ("bookworm", "trixie")
    # The lab's --suite is only the default: a lab whose every host names another needs only that.
    assert _mixed_config("new1@trixie,new2@trixie").suites == ("trixie",)
    assert _mixed_config("a,b", suite="trixie").suites == ("trixie",)
    assert _mixed_config("a,b@bookworm", suite=None).suites == ("bookworm",)


def test_config_without_subnet_keeps_plain_names_and_checks_suites() -> None:
    config = lab.config_from_args(
        name="mol", bridge=None, subnet=None, hosts="old1,new1@trixie", suite=None, state_dir=None, environ={}
    )
    assert [(h.name, h.suite) for h in config.hosts] == [("old1", "bookworm"), ("new1", "trixie")]
    with pytest.raises(lab.LabError, match="'sid': use one of bookworm, trixie"):
        lab.config_from_args(
            name="mol", bridge=None, subnet=None, hosts="new1@sid", suite=None, state_dir=None, environ={}
        )


def _mixed_state() -> lab.LabState:
    def host(name: str, ip: str, suite: str) -> lab.HostState:
        return lab.HostState(
            name=name,
            machine=f"hlpmix-{name}",
            ip=ip,
            root=f"/var/lib/redis-ha-kit/hlpmix/machines/{name}/root",
            log=f"/x/logs/{name}.log",
            pid=1234,
            veth=f"vb-hlpmix-{name}",
            suite=suite,
            image=f"/var/cache/redis-ha-kit/images/{suite}",
            apt_repo=f"/var/cache/redis-ha-kit/apt/{suite}",
        )

    return lab.LabState(
        name="hlpmix",
        bridge="rhkbrx9",
        subnet="10.147.90.0/24",
        suite="bookworm",
        image="/var/cache/redis-ha-kit/images/bookworm",
        apt_repo="/var/cache/redis-ha-kit/apt/bookworm",
        hosts={"old1": host("old1", "10.147.90.11", "bookworm"), "new1": host("new1", "10.147.90.12", "trixie")},
    )


def test_state_with_per_host_suites_round_trips(tmp_path: Path) -> None:
    state = _mixed_state()
    lab.save_state(tmp_path, state)
    loaded = lab.load_state(tmp_path)
    assert loaded == state
    assert loaded is not None
    new1 = loaded.hosts["new1"]
    assert (new1.suite, new1.image, new1.apt_repo) == (
        "trixie",
        "/var/cache/redis-ha-kit/images/trixie",
        "/var/cache/redis-ha-kit/apt/trixie",
    )
    assert loaded.hosts["old1"].suite == "bookworm"
    assert json.loads((tmp_path / "state.json").read_text())["hosts"]["new1"]["suite"] == "trixie"


def test_state_written_before_per_host_suites_loads_with_the_labs_suite(tmp_path: Path) -> None:
    old = {
        "name": "rhk",
        "bridge": "rhkbr0",
        "subnet": "10.147.29.0/24",
        "suite": "trixie",
        "image": "/var/cache/redis-ha-kit/images/trixie",
        "apt_repo": "/var/cache/redis-ha-kit/apt/trixie",
        "hosts": {
            "redis1": {
                "name": "redis1",
                "machine": "rhk-redis1",
                "ip": "10.147.29.11",
                "root": "/var/lib/redis-ha-kit/rhk/machines/redis1/root",
                "log": "/x/logs/redis1.log",
                "pid": 1234,
                "veth": "vb-rhk-redis1",
                "root_mode": "overlay",
            }
        },
        "started": "2025-05-20T12:00:00+00:00",
        "version": 1,
    }
    (tmp_path / "state.json").write_text(json.dumps(old))
    state = lab.load_state(tmp_path)
    assert state is not None
    host = state.hosts["redis1"]
    assert (host.suite, host.image, host.apt_repo) == (
        "trixie",
        "/var/cache/redis-ha-kit/images/trixie",
        "/var/cache/redis-ha-kit/apt/trixie",
    )
    config = lab.config_from_args(
        name="rhk", bridge=None, subnet=None, hosts="redis1", suite="trixie", state_dir="/tmp/x", environ={}
    )
    assert state.fingerprint() == config.fingerprint()


def test_running_mixed_lab_matches_its_config_host_by_host() -> None:
    assert _mixed_state().fingerprint() == _mixed_config().fingerprint()
    assert _mixed_state().fingerprint() != _mixed_config("old1,new1").fingerprint()


def test_a_host_running_another_suite_than_requested_is_recreated() -> None:
    # healthy() looks at the suites before it looks at anything running.
    assert lab.Lab(_mixed_config("old1,new1@bookworm")).healthy(_mixed_state()) == (
        "host new1 runs trixie, not the requested bookworm"
    )
    assert lab.Lab(_mixed_config("old1@trixie,new1@trixie")).healthy(_mixed_state()) == (
        "host old1 runs bookworm, not the requested trixie"
    )


def test_status_shows_each_hosts_suite(capsys: pytest.CaptureFixture[str]) -> None:
    report = {
        "name": "hlpmix",
        "up": True,
        "bridge": "rhkbrx9",
        "subnet": "10.147.90.0/24",
        "suite": "bookworm",
        "hosts": {
            "old1": {"ip": "10.147.90.11", "suite": "bookworm", "pid": 1, "veth": "vb-x", "link": "up", "ssh": True},
            "new1": {"ip": "10.147.90.12", "suite": "trixie", "pid": 2, "veth": "vb-y", "link": "up", "ssh": True},
        },
    }
    lab.print_status(report)
    lines = capsys.readouterr().out.splitlines()
    assert "(bookworm)" in lines[0]
    assert "bookworm" in lines[1] and "old1" in lines[1]
    assert "trixie" in lines[2] and "new1" in lines[2]


def test_cli_passes_per_host_suites_through() -> None:
    args = lab.build_parser().parse_args(["up", "--hosts", "old1,new1@trixie", "--suite", "bookworm"])
    assert (args.hosts, args.suite) == ("old1,new1@trixie", "bookworm")
