#!/usr/bin/env python3
"""Local test lab: Debian hosts as systemd-nspawn containers on a private bridge, no Docker.

    lab.py up          build what is missing, boot the hosts, wait for SSH, print a summary
    lab.py down        stop the hosts, delete bridge, links and host root filesystems
    lab.py status      what runs, and whether each host answers SSH
    lab.py exec HOST -- CMD...        run a command inside a host (nsenter, no SSH); lab
                                      options go before HOST
    lab.py link-down HOST / link-up HOST   cut a host off the bridge / heal it (partitions;
                                      link-up returns once the host answers again)
    lab.py build       only build (or with --rebuild, rebuild) the base image and apt repository
                       of every suite the lab's hosts use

Every command takes --name, --bridge, --subnet, --hosts, --suite and --state-dir, so a second
lab (a Molecule scenario, say) can run beside the default one:
    lab.py up --name rhkm --bridge rhkbr1 --subnet 10.147.30.0/24 --hosts redis1,redis2

One lab may mix Debian releases: a host in --hosts may name its own suite (`name@suite` or
`name=ip@suite`); the others run --suite. Each host boots from its own suite's image with its
own suite's apt repository at APT_REPO_MOUNT (same bridge, same subnet), so a test can move a
cluster from Debian 12 hosts to Debian 13 hosts:
    lab.py up --name rhkm --bridge rhkbr1 --subnet 10.147.30.0/24 --suite bookworm \
        --hosts redis1,redis2,new1@trixie,new2=10.147.30.31@trixie

Layout
------
Caches, one pair per suite a lab's hosts use, each built once under its own file lock and shared
by every lab and every clone of the repository (root's; `down` keeps them; RHK_LAB_CACHE_DIR
moves them, e.g. for a checkout that changes LAB_PACKAGES beside others):
    /var/cache/redis-ha-kit/images/<suite>/   base root filesystem (debootstrap), built in a
                                              temporary directory and renamed into place
    /var/cache/redis-ha-kit/apt/<suite>/      local apt repository: the .deb files the lab
                                              packages need beyond the image, Packages(.gz),
                                              Release, lab-repo.json (what it was built for)
Host root filesystems (`down` removes them):
    /var/lib/redis-ha-kit/<lab>/machines/<host>/{upper,work,root}
                                              root is an overlay mount over the base image
                                              (a full copy where overlayfs is unavailable)
State of one lab (`down` keeps keys and secrets; `down --purge` removes them):
    default lab "rhk":  <repo>/.lab/
    any other lab:      <repo>/.lab/labs/<lab>/       (--state-dir overrides both)
        ssh/id_ed25519(.pub)   the lab's SSH key (0600), generated once
        secrets/<name>         one random password per file (0600, directory 0700), generated
                               once: redis_admin_password, redis_app_password, ...
        state.json             what runs: suite (the default one), bridge, subnet, and per host
                               its machine name, address, suite, image, apt repository, nspawn
                               pid, host-side veth name, root and console log (a host of an
                               older state file without its own suite runs the lab's)
        run/<host>.pid         the nspawn pid of each host
        logs/<host>.log        the console of each host
        known_hosts            the host keys `up` generated (rewritten by each `up`)
        ssh_config             `ssh -F <state>/ssh_config redis1` logs in

Host-side interface names: nspawn names a host's veth `vb-<machine>`; when that is longer than
15 bytes (IFNAMSIZ - 1) systemd >= 251 keeps the first 11 bytes and appends 4 url-safe base64
characters of a SipHash-2-4 of the full name (older systemd just truncated). `veth_name()`
predicts it; `up` then reads the real name from the bridge and records it in state.json.

Processes are stopped only through their own pid, from the pid file, after /proc/PID/cmdline
shows it is systemd-nspawn for this very machine and root directory; never by process name.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime
import fcntl
import gzip
import hashlib
import ipaddress
import itertools
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("lab")

# Defaults of the default lab.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NAME = "rhk"
DEFAULT_BRIDGE = "rhkbr0"
DEFAULT_SUBNET = "10.147.29.0/24"
DEFAULT_HOSTS = ("redis1", "redis2", "redis3", "app1")
DEFAULT_SUITE = "bookworm"
FIRST_HOST_OFFSET = 11
"""Hosts get consecutive addresses from this offset in the subnet: .11, .12, ..."""

SUPPORTED_SUITES = ("bookworm", "trixie")
CACHE_DIR = Path(os.environ.get("RHK_LAB_CACHE_DIR") or "/var/cache/redis-ha-kit")
MACHINES_DIR = Path("/var/lib/redis-ha-kit")
LOCK_DIR = Path("/run/redis-ha-kit")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
LAB_HOST_MARKER = "etc/lab-host.json"
"""Written into each host's root: lets `down` recognise a host whose nspawn was killed."""
APT_REPO_MOUNT = "/srv/lab-apt"
"""Where each host sees the local apt repository (read-only bind mount)."""

# What the base image holds: a bootable Debian plus what Ansible and the tests need on a host
# that is not itself a package the kit deploys.
IMAGE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",  # Ansible's apt module
    "iproute2",
    "iptables",  # partition drills
    "procps",
    "sudo",  # Ansible's `become` runs sudo even as root
    "less",
    "iputils-ping",
    "netcat-openbsd",
)
IMAGE_FORMAT = 1
"""Bump when the image's preparation changes, so cached images are rebuilt."""

# What the local apt repository serves to the hosts (with their dependencies and recommends).
# Extend here; the repository is rebuilt when this list changes.
LAB_PACKAGES = (
    "redis-server",
    "redis-sentinel",
    "redis-tools",
    "prometheus-redis-exporter",
    "python3-redis",
    "prometheus",
    "prometheus-alertmanager",
    "iptables",
    "python3-venv",
    "python3-pip",
)
SUITE_EXTRA_PACKAGES: Mapping[str, tuple[str, ...]] = {
    "trixie": ("valkey-server", "valkey-sentinel", "valkey-tools"),
}

SECRET_NAMES = (
    "redis_admin_password",
    "redis_app_password",
    "redis_replication_password",
    "redis_sentinel_password",
    "sentinel_password",
    "redis_exporter_password",
    "sentinel_peer_password",
    "sentinel_app_password",
    "redis_backup_password",
)
SECRET_BYTES = 32
"""Entropy of each generated password in bytes (token_urlsafe gives 43 characters)."""

# Time limits, in seconds.
# A machine running several labs at once (load 15-20 on 2 cores) boots a 5-host lab in over 90 s.
SSH_WAIT_S = 240.0
STOP_WAIT_S = 30.0
KILL_WAIT_S = 10.0
VETH_WAIT_S = 15.0
LINK_HEAL_WAIT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
BUILD_STEP_TIMEOUT_S = 1800.0
LOCK_WAIT_S = 1800.0
SSH_PROBE_TIMEOUT_S = 3

IFNAMSIZ = 16
SHORTEN_IFNAME_HASH_KEY = bytes.fromhex("e190a404a8ef4b518cccc33a9f11fca2")
"""systemd's key for shortening long interface names (src/nspawn/nspawn-network.c)."""
_URLSAFE_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
_HOST_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
STATE_VERSION = 1


class LabError(Exception):
    """A lab operation failed; the message says what and what to do."""


# --------------------------------------------------------------------------------------------
# Pure parts: parsing, naming, rendering. No I/O below until the "World" section.
# --------------------------------------------------------------------------------------------


def validate_lab_name(name: str) -> str:
    if not _LAB_NAME_RE.match(name):
        raise LabError(
            f"lab name {name!r} is not valid: use 1-10 lowercase letters and digits, "
            "starting with a letter (it prefixes machine and interface names)"
        )
    return name


def validate_bridge_name(name: str) -> str:
    if not _IFNAME_RE.match(name) or name in {".", ".."}:
        raise LabError(
            f"bridge name {name!r} is not a valid interface name: 1-15 characters of letters, digits, '_', '.', '-'"
        )
    return name


def parse_subnet(text: str) -> ipaddress.IPv4Network:
    """The lab's IPv4 subnet: private, /16 to /29, given as its network address."""
    try:
        network = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise LabError(f"subnet {text!r} is not an IPv4 network like 10.147.29.0/24: {exc}") from exc
    if not 16 <= network.prefixlen <= 29:
        raise LabError(f"subnet {text} must have a prefix between /16 and /29")
    if not network.is_private or network.is_loopback or network.is_link_local:
        raise LabError(f"subnet {text} must be a private range (10/8, 172.16/12, 192.168/16)")
    return network


@dataclasses.dataclass(frozen=True)
class HostSpec:
    name: str
    ip: ipaddress.IPv4Address
    suite: str
    """The host's Debian suite: its own `@suite` in --hosts, else the lab's --suite."""


def split_host_item(item: str) -> tuple[str, str | None, str | None]:
    """One --hosts item, `name[=ip][@suite]`, as (name, ip text or None, suite or None)."""
    head, at, suite = item.partition("@")
    name, eq, addr = head.partition("=")
    return name.strip(), (addr.strip() if eq else None), (suite.strip() if at else None)


def parse_hosts(text: str, network: ipaddress.IPv4Network, default_suite: str = DEFAULT_SUITE) -> tuple[HostSpec, ...]:
    """`redis1,redis2` or `redis1=10.147.29.21,redis2`: unnamed addresses count from .11.

    A host may name its own Debian suite, `new1@trixie` or `new2=10.147.29.31@trixie`; the
    others get `default_suite`. Every problem is reported at once.
    """
    problems: list[str] = []
    hosts: list[HostSpec] = []
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise LabError("--hosts names no host")
    gateway = network.network_address + 1
    for index, item in enumerate(items):
        name, addr, suite = split_host_item(item)
        if not _HOST_NAME_RE.match(name):
            problems.append(
                f"host name {name!r} is not valid (lowercase letters, digits and '-', "
                "starting with a letter, at most 32 characters)"
            )
            continue
        if suite is not None and suite not in SUPPORTED_SUITES:
            problems.append(
                f"host {name}: suite {suite!r} is not supported: use one of {', '.join(SUPPORTED_SUITES)} "
                "(written name@suite or name=ip@suite)"
            )
            continue
        try:
            ip = ipaddress.IPv4Address(addr) if addr else network.network_address + FIRST_HOST_OFFSET + index
        except (ValueError, ipaddress.AddressValueError) as exc:
            problems.append(f"host {name}: {exc}")
            continue
        if ip not in network or ip in {network.network_address, network.broadcast_address}:
            problems.append(f"host {name}: address {ip} is not a host address of {network}")
        elif ip == gateway:
            problems.append(f"host {name}: address {ip} is the bridge's own address")
        hosts.append(HostSpec(name, ip, suite or default_suite))
    names = [h.name for h in hosts]
    ips = [h.ip for h in hosts]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"host {dup} is listed more than once")
    for dup_ip in sorted({i for i in ips if ips.count(i) > 1}):
        problems.append(f"address {dup_ip} is given to more than one host")
    if problems:
        raise LabError("--hosts has problems:\n  " + "\n  ".join(problems))
    return tuple(hosts)


def siphash24(key: bytes, data: bytes) -> int:
    """SipHash-2-4 of data (the 64-bit integer systemd's siphash24() returns)."""
    if len(key) != 16:
        raise ValueError("SipHash needs a 16-byte key")
    mask = (1 << 64) - 1

    def rotl(x: int, bits: int) -> int:
        return ((x << bits) | (x >> (64 - bits))) & mask

    k0 = int.from_bytes(key[:8], "little")
    k1 = int.from_bytes(key[8:], "little")
    v = [
        k0 ^ 0x736F6D6570736575,
        k1 ^ 0x646F72616E646F6D,
        k0 ^ 0x6C7967656E657261,
        k1 ^ 0x7465646279746573,
    ]

    def sipround() -> None:
        v[0] = (v[0] + v[1]) & mask
        v[1] = rotl(v[1], 13) ^ v[0]
        v[0] = rotl(v[0], 32)
        v[2] = (v[2] + v[3]) & mask
        v[3] = rotl(v[3], 16) ^ v[2]
        v[0] = (v[0] + v[3]) & mask
        v[3] = rotl(v[3], 21) ^ v[0]
        v[2] = (v[2] + v[1]) & mask
        v[1] = rotl(v[1], 17) ^ v[2]
        v[2] = rotl(v[2], 32)

    whole = len(data) - len(data) % 8
    for start in range(0, whole, 8):
        m = int.from_bytes(data[start : start + 8], "little")
        v[3] ^= m
        sipround()
        sipround()
        v[0] ^= m
    last = ((len(data) & 0xFF) << 56) | int.from_bytes(data[whole:], "little")
    v[3] ^= last
    sipround()
    sipround()
    v[0] ^= last
    v[2] ^= 0xFF
    for _ in range(4):
        sipround()
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def shorten_ifname(name: str) -> str:
    """What systemd-nspawn (>= 251) makes of an interface name too long for the kernel."""
    raw = name.encode()
    if len(raw) < IFNAMSIZ:
        return name
    h = siphash24(SHORTEN_IFNAME_HASH_KEY, raw)
    tail = "".join(_URLSAFE_B64[(h >> shift) & 63] for shift in (18, 12, 6, 0))
    return raw[: IFNAMSIZ - 5].decode() + tail


def veth_name(machine: str) -> str:
    """The host-side interface systemd-nspawn --network-bridge creates for a machine."""
    return shorten_ifname(f"vb-{machine}")


def machine_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def render_network_file(ip: ipaddress.IPv4Address, network: ipaddress.IPv4Network) -> str:
    # 10- sorts before the image's 80-container-host0.network (link-local only).
    # Carrier settings keep the address while a partition drill takes the link down.
    return (
        "# Written by tests/lab/lab.py\n"
        "[Match]\nName=host0\n\n"
        "[Network]\n"
        f"Address={ip}/{network.prefixlen}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
        "ConfigureWithoutCarrier=yes\nIgnoreCarrierLoss=yes\n"
    )


def render_hosts_file(hosts: Sequence[HostSpec]) -> str:
    lines = [
        "# Written by tests/lab/lab.py",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    lines += [f"{h.ip}\t{h.name}" for h in hosts]
    return "\n".join(lines) + "\n"


def render_ssh_config(hosts: Sequence[HostSpec], key: Path, known_hosts: Path) -> str:
    blocks = []
    for h in hosts:
        blocks.append(
            f"Host {h.name} {h.ip}\n"
            f"    HostName {h.ip}\n"
            "    User root\n"
            f"    IdentityFile {key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {known_hosts}\n"
            "    StrictHostKeyChecking yes\n"
        )
    return "# Written by tests/lab/lab.py\n" + "\n".join(blocks)


def subnet_conflicts(routes: Sequence[Mapping[str, Any]], network: ipaddress.IPv4Network, bridge: str) -> list[str]:
    """Routes (from `ip -j -4 route show table all`) that overlap the lab's subnet.

    The default route and routes through the lab's own bridge are not conflicts.
    """
    found = []
    for route in routes:
        dst = str(route.get("dst", ""))
        dev = str(route.get("dev", ""))
        if not dst or dst == "default" or dev == bridge:
            continue
        try:
            routed = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if routed.prefixlen == 0:
            continue
        if routed.overlaps(network):
            table = route.get("table", "main")
            found.append(f"{dst} via {dev or '?'} (table {table})")
    return found


def is_lab_nspawn(argv: Sequence[str], machine: str, root: Path) -> bool:
    """Whether a process's argv is the systemd-nspawn this lab started for `machine`."""
    if not argv or Path(argv[0]).name != "systemd-nspawn":
        return False
    if f"--machine={machine}" not in argv:
        return False
    return any(a == "-D" and b == str(root) for a, b in itertools.pairwise(argv))


def is_lab_init(environ: bytes, status: str, marker: str, lab: str) -> bool:
    """Whether a process is the PID 1 of a host of `lab`, from its /proc environ and status
    and the marker file in its root."""
    if b"container=systemd-nspawn" not in environ.split(b"\0"):
        return False
    nspid = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
    if not nspid or nspid[0][-1:] != ["1"] or len(nspid[0]) < 2:
        return False
    try:
        info = json.loads(marker)
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("lab") == lab


def spec_digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def image_spec(suite: str) -> str:
    return spec_digest("image", IMAGE_FORMAT, suite, IMAGE_PACKAGES)


def repo_packages(suite: str) -> tuple[str, ...]:
    return LAB_PACKAGES + tuple(SUITE_EXTRA_PACKAGES.get(suite, ()))


def render_release(files: Mapping[str, bytes], suite: str, now: datetime.datetime) -> str:
    """A flat repository's Release file listing the index files with their SHA256 sums."""
    lines = [
        "Origin: redis-ha-kit lab",
        "Label: redis-ha-kit lab",
        f"Suite: {suite}",
        f"Codename: {suite}",
        f"Date: {now.strftime('%a, %d %b %Y %H:%M:%S UTC')}",
        "Architectures: amd64 all",
        "Description: local apt repository of the redis-ha-kit test lab",
        "SHA256:",
    ]
    for name, content in sorted(files.items()):
        lines.append(f" {hashlib.sha256(content).hexdigest()} {len(content)} {name}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Configuration and state
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LabConfig:
    name: str
    bridge: str | None
    network: ipaddress.IPv4Network | None
    hosts: tuple[HostSpec, ...]
    suite: str
    state_dir: Path

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        assert self.network is not None
        return self.network.network_address + 1

    def machine(self, host: str) -> str:
        return machine_name(self.name, host)

    def machine_dir(self, host: str) -> Path:
        return MACHINES_DIR / self.name / "machines" / host

    @property
    def suites(self) -> tuple[str, ...]:
        """Every suite a host of the lab runs, in SUPPORTED_SUITES order."""
        used = {h.suite for h in self.hosts}
        return tuple(s for s in SUPPORTED_SUITES if s in used)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bridge": self.bridge,
            "subnet": str(self.network),
            "suite": self.suite,
            "hosts": {h.name: {"ip": str(h.ip), "suite": h.suite} for h in self.hosts},
        }


def default_state_dir(name: str, repo_root: Path = REPO_ROOT) -> Path:
    if name == DEFAULT_NAME:
        return repo_root / ".lab"
    return repo_root / ".lab" / "labs" / name


def config_from_args(
    *,
    name: str,
    bridge: str | None,
    subnet: str | None,
    hosts: str | None,
    suite: str | None,
    state_dir: str | None,
    environ: Mapping[str, str],
) -> LabConfig:
    """Builds the lab's configuration; a non-default lab must name its own bridge and subnet."""
    validate_lab_name(name)
    if name == DEFAULT_NAME:
        bridge = bridge or DEFAULT_BRIDGE
        subnet = subnet or DEFAULT_SUBNET
    if bridge is not None:
        validate_bridge_name(bridge)
    network = parse_subnet(subnet) if subnet is not None else None
    chosen_suite = suite or environ.get("LAB_SUITE") or DEFAULT_SUITE
    if chosen_suite not in SUPPORTED_SUITES:
        raise LabError(f"suite {chosen_suite!r} is not supported: use one of {', '.join(SUPPORTED_SUITES)}")
    host_specs: tuple[HostSpec, ...]
    if network is not None:
        host_specs = parse_hosts(hosts or ",".join(DEFAULT_HOSTS), network, chosen_suite)
    else:
        # Without a subnet only names and suites matter (`down` or `build` of a lab that is not up).
        items = [split_host_item(item) for item in (hosts or ",".join(DEFAULT_HOSTS)).split(",") if item.strip()]
        unknown = sorted({s for _, _, s in items if s is not None and s not in SUPPORTED_SUITES})
        if unknown:
            raise LabError(
                f"--hosts names suite(s) {', '.join(map(repr, unknown))}: use one of {', '.join(SUPPORTED_SUITES)}"
            )
        host_specs = tuple(HostSpec(n, ipaddress.IPv4Address(0), s or chosen_suite) for n, _, s in items)
    return LabConfig(
        name=name,
        bridge=bridge,
        network=network,
        hosts=host_specs,
        suite=chosen_suite,
        state_dir=Path(state_dir).resolve() if state_dir else default_state_dir(name),
    )


@dataclasses.dataclass
class HostState:
    name: str
    machine: str
    ip: str
    root: str
    log: str
    pid: int | None = None
    veth: str | None = None
    root_mode: str = "overlay"
    suite: str = ""
    """The host's Debian suite; its root is an overlay over `image`, `apt_repo` is bound at
    APT_REPO_MOUNT. A state file older than per-host suites gives them the lab's own."""
    image: str = ""
    apt_repo: str = ""


@dataclasses.dataclass
class LabState:
    name: str
    bridge: str
    subnet: str
    suite: str
    image: str
    apt_repo: str
    hosts: dict[str, HostState]
    started: str = ""
    version: int = STATE_VERSION

    def __post_init__(self) -> None:
        # A host recorded before hosts had their own suite runs the lab's, from its caches.
        for host in self.hosts.values():
            host.suite = host.suite or self.suite
            host.image = host.image or self.image
            host.apt_repo = host.apt_repo or self.apt_repo

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabState:
        try:
            raw = json.loads(text)
            if raw.get("version") != STATE_VERSION:
                raise LabError(f"state version {raw.get('version')!r} is not {STATE_VERSION}")
            hosts = {k: HostState(**v) for k, v in raw.pop("hosts").items()}
            return cls(hosts=hosts, **raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise LabError(f"state file is not valid: {exc}") from exc

    def fingerprint(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bridge": self.bridge,
            "subnet": self.subnet,
            "suite": self.suite,
            "hosts": {n: {"ip": h.ip, "suite": h.suite} for n, h in self.hosts.items()},
        }


def write_file(path: Path, content: str | bytes, mode: int = 0o644) -> None:
    """Writes atomically (temporary file and rename) with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def load_state(state_dir: Path) -> LabState | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    return LabState.from_json(path.read_text())


def save_state(state_dir: Path, state: LabState) -> None:
    write_file(state_dir / "state.json", state.to_json())


# --------------------------------------------------------------------------------------------
# World: commands, processes, links, mounts
# --------------------------------------------------------------------------------------------


def run(
    cmd: Sequence[str],
    *,
    timeout: float = COMMAND_TIMEOUT_S,
    check: bool = True,
    capture: bool = True,
    what: str | None = None,
    cwd: Path | None = None,
    log_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command, bounded in time; failures raise LabError with the command's output."""
    log.debug("$ %s", shlex.join(cmd))
    try:
        if log_file is not None:
            with log_file.open("a") as out:
                out.write(f"\n$ {shlex.join(cmd)}\n")
                out.flush()
                proc = subprocess.run(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    text=True, timeout=timeout, check=False, cwd=cwd,
                )  # fmt: skip
        else:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=capture, text=True,
                timeout=timeout, check=False, cwd=cwd,
            )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what or shlex.join(cmd)} did not finish within {timeout:.0f} s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} is not installed (run `make system-deps`)") from exc
    if check and proc.returncode != 0:
        detail = ""
        if log_file is not None:
            detail = f"; last lines of {log_file}:\n{tail(log_file, 25)}"
        elif capture:
            detail = ":\n" + (proc.stderr or proc.stdout or "").strip()[-3000:]
        raise LabError(f"{what or shlex.join(cmd)} failed with exit status {proc.returncode}{detail}")
    return proc


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def proc_argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (reaped here when it is our child)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in task.read_text().split()]
    return kids


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def is_bridge(name: str) -> bool:
    return Path("/sys/class/net", name, "bridge").is_dir()


def bridge_members(name: str) -> list[str]:
    brif = Path("/sys/class/net", name, "brif")
    return sorted(p.name for p in brif.iterdir()) if brif.is_dir() else []


def link_operstate(name: str) -> str:
    try:
        flags = int(Path("/sys/class/net", name, "flags").read_text(), 16)
    except (OSError, ValueError):
        return "absent"
    return "up" if flags & 0x1 else "down"


def link_altnames(name: str) -> list[str]:
    proc = run(["ip", "-j", "link", "show", "dev", name], check=False)
    if proc.returncode != 0:
        return []
    with contextlib.suppress(ValueError, IndexError):
        return [str(a) for a in json.loads(proc.stdout)[0].get("altnames", [])]
    return []


def mountpoints_under(path: Path) -> list[Path]:
    """Mount points at or below path, deepest first."""
    found = []
    prefix = str(path).rstrip("/")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].encode().decode("unicode_escape")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(Path(mnt))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def overlays_on(lower: Path) -> list[Path]:
    """Overlay mounts using `lower` as their lower directory (labs running on an image)."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "overlay" and f"lowerdir={lower}" in fields[sep + 3]:
                found.append(Path(fields[4]))
    return found


def unmount_tree(path: Path) -> None:
    for mnt in mountpoints_under(path):
        if run(["umount", str(mnt)], check=False).returncode != 0:
            log.warning("%s is busy; detaching it lazily", mnt)
            run(["umount", "-l", str(mnt)], what=f"unmounting {mnt}")


def remove_tree(path: Path) -> None:
    """Removes a directory tree, after unmounting anything mounted inside it."""
    if not path.exists():
        return
    unmount_tree(path)
    if mountpoints_under(path):
        raise LabError(f"{path} still has mounts; not removing it")
    run(["rm", "-rf", "--one-file-system", str(path)], timeout=300, what=f"removing {path}")


@contextlib.contextmanager
def file_lock(path: Path, wait_s: float, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    log.info("waiting for another lab.py working on %s (lock %s)", what, path)
                    told = True
                if time.monotonic() > deadline:
                    raise LabError(f"{what} stayed locked by another lab.py for {wait_s:.0f} s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def nspawn_run(
    root: Path,
    script: str,
    *,
    log_file: Path,
    what: str,
    binds: Sequence[str] = (),
    timeout: float = BUILD_STEP_TIMEOUT_S,
) -> None:
    """Runs a shell script in a root tree (not booted), with the machine's network."""
    cmd = [
        "systemd-nspawn", "-q", "-D", str(root), "--register=no", "--keep-unit",
        "--pipe", "--resolv-conf=copy-host", "--timezone=off", "--link-journal=no",
        "-E", "DEBIAN_FRONTEND=noninteractive", "-E", "LC_ALL=C.UTF-8",
    ]  # fmt: skip
    cmd += list(binds)
    cmd += ["--", "/bin/sh", "-euxc", script]
    run(cmd, timeout=timeout, log_file=log_file, what=what)


@contextlib.contextmanager
def scratch_root(image: Path, workdir: Path) -> Iterator[Path]:
    """A writable throw-away view of an image: an overlay, or a copy without overlayfs."""
    for sub in ("upper", "work", "root"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    root = workdir / "root"
    mount_root(image, workdir)
    try:
        yield root
    finally:
        unmount_tree(root)


def mount_root(image: Path, workdir: Path) -> str:
    """Mounts workdir/root as an overlay over image; copies the image where that fails."""
    root = workdir / "root"
    opts = f"lowerdir={image},upperdir={workdir / 'upper'},workdir={workdir / 'work'}"
    proc = run(["mount", "-t", "overlay", "overlay", "-o", opts, str(root)], check=False)
    if proc.returncode == 0:
        return "overlay"
    log.warning("overlayfs is unavailable (%s); copying the image instead", proc.stderr.strip())
    run(
        ["cp", "-a", "--reflink=auto", f"{image}/.", str(root)],
        timeout=600,
        what=f"copying {image} to {root}",
    )
    return "copy"


# --------------------------------------------------------------------------------------------
# Caches: base image and local apt repository
# --------------------------------------------------------------------------------------------


def build_sources(suite: str, environ: Mapping[str, str]) -> str:
    mirror = environ.get("LAB_MIRROR", DEFAULT_MIRROR)
    security = environ.get("LAB_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR)
    return f"deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\ndeb {security} {suite}-security main\n"


LAB_SOURCES = f"deb [trusted=yes] file:{APT_REPO_MOUNT} ./\n"


class Caches:
    """The base image and apt repository of one suite, built once and shared by all labs."""

    def __init__(self, suite: str, environ: Mapping[str, str], cache_dir: Path = CACHE_DIR):
        self.suite = suite
        self.environ = environ
        self.image = cache_dir / "images" / suite
        self.repo = cache_dir / "apt" / suite
        self.logs = cache_dir / "logs"
        self.lock = cache_dir / f".lock-{suite}"
        self.timings: dict[str, float] = {}

    def image_info(self) -> dict[str, Any] | None:
        try:
            info = json.loads((self.image / "etc" / "lab-image.json").read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def repo_info(self) -> dict[str, Any] | None:
        try:
            info = json.loads((self.repo / "lab-repo.json").read_text())
        except (OSError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def image_current(self) -> bool:
        info = self.image_info()
        return info is not None and info.get("spec") == image_spec(self.suite)

    def repo_current(self) -> bool:
        image, repo = self.image_info(), self.repo_info()
        return (
            image is not None
            and repo is not None
            and repo.get("image_id") == image.get("id")
            # A repository built for more packages serves a checkout that lists fewer.
            and set(repo_packages(self.suite)) <= set(repo.get("packages") or ())
        )

    def ensure(self, rebuild: bool = False) -> None:
        with file_lock(self.lock, LOCK_WAIT_S, f"the {self.suite} caches"):
            if rebuild or not self.image_current():
                in_use = overlays_on(self.image)
                if in_use and self.image.exists():
                    raise LabError(
                        f"the {self.suite} image is in use by running hosts ({', '.join(map(str, in_use))}); "
                        "bring those labs down before rebuilding it"
                    )
                self._build_image()
            if rebuild or not self.repo_current():
                self._build_repo()

    def _replace(self, built: Path, target: Path) -> None:
        old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
        if target.exists():
            target.rename(old)
        built.rename(target)
        remove_tree(old)

    def _build_image(self) -> None:
        started = time.monotonic()
        self.image.parent.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_file = self.logs / f"image-{self.suite}.log"
        log_file.write_text("")
        for stale in self.image.parent.glob(f".build-{self.suite}-*"):
            remove_tree(stale)
        tmp = self.image.parent / f".build-{self.suite}-{uuid.uuid4().hex[:8]}"
        mirror = self.environ.get("LAB_MIRROR", DEFAULT_MIRROR)
        log.info("building the %s base image (debootstrap, a few minutes; log %s)", self.suite, log_file)
        try:
            run(
                [
                    "debootstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}",
                    self.suite, str(tmp), mirror,
                ],
                timeout=BUILD_STEP_TIMEOUT_S, log_file=log_file, what=f"debootstrap {self.suite}",
            )  # fmt: skip
            write_file(tmp / "etc/apt/sources.list", build_sources(self.suite, self.environ))
            nspawn_run(
                tmp,
                "apt-get update -q && apt-get -y -q dist-upgrade && apt-get clean",
                log_file=log_file,
                what=f"updating the {self.suite} image",
            )
            self._finish_image(tmp)
            self._replace(tmp, self.image)
        except BaseException:
            remove_tree(tmp)
            raise
        self.timings["image"] = time.monotonic() - started
        log.info("built the %s base image in %.0f s", self.suite, self.timings["image"])

    def _finish_image(self, root: Path) -> None:
        """Leaves the image generic: no host keys or machine id, apt pointed at the lab repo."""
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        write_file(root / "etc/machine-id", "")
        (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        for src in (root / "etc/apt/sources.list.d").glob("*"):
            src.unlink()
        write_file(root / "etc/apt/sources.list.d/lab.list", LAB_SOURCES)
        for lists in (root / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "systemd-networkd.service"
        if not link.is_symlink():
            link.symlink_to("/lib/systemd/system/systemd-networkd.service")
        # Only the ed25519 key is generated per host.
        write_file(
            root / "etc/ssh/sshd_config.d/lab.conf",
            "# Written by tests/lab/lab.py\nHostKey /etc/ssh/ssh_host_ed25519_key\nUseDNS no\n",
        )
        # No DNS on the lab network; /etc/hosts names every lab host.
        resolv = root / "etc/resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        write_file(resolv, "# The lab has no DNS: /etc/hosts names every lab host.\n")
        info = {
            "id": uuid.uuid4().hex,
            "spec": image_spec(self.suite),
            "suite": self.suite,
            "packages": list(IMAGE_PACKAGES),
            "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        write_file(root / "etc/lab-image.json", json.dumps(info, indent=2) + "\n")

    def _build_repo(self) -> None:
        started = time.monotonic()
        image = self.image_info()
        assert image is not None
        packages = repo_packages(self.suite)
        self.repo.parent.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        log_file = self.logs / f"apt-{self.suite}.log"
        log_file.write_text("")
        for stale in self.repo.parent.glob(f".build-{self.suite}-*"):
            remove_tree(stale)
        work = self.repo.parent / f".build-{self.suite}-{uuid.uuid4().hex[:8]}"
        repo = work / "repo"
        (repo / "partial").mkdir(parents=True)
        log.info("building the %s apt repository for: %s (log %s)", self.suite, " ".join(packages), log_file)
        try:
            with scratch_root(self.image, work / "scratch") as root:
                # Download in a throw-away copy of the image, so apt resolves dependencies against
                # exactly what the hosts have, for the image's own suite.
                write_file(root / "etc/apt/sources.list.d/lab.list", build_sources(self.suite, self.environ))
                nspawn_run(
                    root,
                    "apt-get update -q && apt-get install -y -q --download-only "
                    f"-o Dir::Cache::archives=/srv/lab-download {' '.join(packages)}",
                    binds=[f"--bind={repo}:/srv/lab-download"],
                    log_file=log_file,
                    what=f"downloading the {self.suite} lab packages",
                )
                shutil.rmtree(repo / "partial")
                (repo / "lock").unlink(missing_ok=True)
                self._index(repo)
                # Prove the repository is complete: install from it alone, simulated.
                write_file(root / "etc/apt/sources.list.d/lab.list", LAB_SOURCES)
                nspawn_run(
                    root,
                    "rm -rf /var/lib/apt/lists/* && apt-get update -q && "
                    f"apt-get install -s -y -q {' '.join(packages)} >/dev/null",
                    binds=[f"--bind-ro={repo}:{APT_REPO_MOUNT}"],
                    log_file=log_file,
                    what=f"checking the {self.suite} apt repository installs on its own",
                )
            info = {
                "image_id": image.get("id"),
                "packages": list(packages),
                "debs": len(list(repo.glob("*.deb"))),
                "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            write_file(repo / "lab-repo.json", json.dumps(info, indent=2) + "\n")
            repo.chmod(0o755)
            self._replace(repo, self.repo)
        finally:
            remove_tree(work)
        self.timings["apt"] = time.monotonic() - started
        log.info("built the %s apt repository (%d packages) in %.0f s", self.suite, info["debs"], self.timings["apt"])

    @staticmethod
    def _index(repo: Path) -> None:
        for deb in repo.glob("*.deb"):
            deb.chmod(0o644)
        packages = run(
            ["dpkg-scanpackages", "--multiversion", ".", "/dev/null"],
            cwd=repo,
            timeout=300,
            what="dpkg-scanpackages",
        ).stdout.encode()
        compressed = gzip.compress(packages, mtime=0)
        write_file(repo / "Packages", packages)
        write_file(repo / "Packages.gz", compressed)
        release = render_release(
            {"Packages": packages, "Packages.gz": compressed},
            suite="lab",
            now=datetime.datetime.now(datetime.UTC),
        )
        write_file(repo / "Release", release)


# --------------------------------------------------------------------------------------------
# The lab
# --------------------------------------------------------------------------------------------


class Lab:
    def __init__(self, config: LabConfig, environ: Mapping[str, str] | None = None):
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.state_dir = config.state_dir
        self.key = self.state_dir / "ssh" / "id_ed25519"
        self.known_hosts = self.state_dir / "known_hosts"
        self.lock = LOCK_DIR / f"lab-{config.name}.lock"

    # -- credentials ------------------------------------------------------------------------

    def ensure_credentials(self) -> None:
        """The lab's SSH key and passwords: generated once, kept across `up` runs."""
        ssh_dir = self.key.parent
        ssh_dir.mkdir(parents=True, exist_ok=True)
        ssh_dir.chmod(0o700)
        if not self.key.exists():
            self.key.with_suffix(".pub").unlink(missing_ok=True)
            run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-{self.config.name}",
                 "-f", str(self.key)],
                what="generating the lab SSH key",
            )  # fmt: skip
        self.key.chmod(0o600)
        secrets_dir = self.state_dir / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        secrets_dir.chmod(0o700)
        for name in SECRET_NAMES:
            path = secrets_dir / name
            if not path.exists() or not path.read_text().strip():
                write_file(path, secrets.token_urlsafe(SECRET_BYTES) + "\n", mode=0o600)
            path.chmod(0o600)

    # -- inspection -------------------------------------------------------------------------

    def verified_pid(self, host: HostState) -> int | None:
        """The host's nspawn pid, if it is alive and really this host's systemd-nspawn."""
        if host.pid is None or not pid_alive(host.pid):
            return None
        argv = proc_argv(host.pid)
        if argv is None or not is_lab_nspawn(argv, host.machine, Path(host.root)):
            return None
        return host.pid

    def init_pid(self, host: HostState) -> int | None:
        """PID (in this namespace) of the host's own PID 1: the nspawn process's child."""
        pid = self.verified_pid(host)
        if pid is None:
            return None
        kids = children_of(pid)
        return kids[0] if kids else None

    def orphan_pids(self, machine: str, root: Path) -> list[int]:
        """nspawn processes for this machine and root that no state file knows about."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                argv = proc_argv(int(entry.name))
                if argv and is_lab_nspawn(argv, machine, root):
                    found.append(int(entry.name))
        return found

    def ssh_cmd(self, ip: str, *command: str, timeout: int = SSH_PROBE_TIMEOUT_S) -> list[str]:
        return [
            "ssh", "-i", str(self.key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", f"ConnectTimeout={timeout}", "-o", "LogLevel=ERROR", f"root@{ip}", *command,
        ]  # fmt: skip

    def ssh_ok(self, ip: str) -> bool:
        try:
            with socket.create_connection((ip, 22), timeout=1):
                pass
        except OSError:
            return False
        proc = subprocess.run(
            self.ssh_cmd(ip, "true"), stdin=subprocess.DEVNULL, capture_output=True,
            timeout=SSH_PROBE_TIMEOUT_S + 10, check=False,
        )  # fmt: skip
        return proc.returncode == 0

    def healthy(self, state: LabState) -> str | None:
        """None when every host runs and answers SSH, else the reason it is not healthy."""
        for spec in self.config.hosts:
            running = state.hosts.get(spec.name)
            if running is not None and running.suite != spec.suite:
                return f"host {spec.name} runs {running.suite}, not the requested {spec.suite}"
        if state.fingerprint() != self.config.fingerprint():
            return "the running lab was started with other settings"
        if not is_bridge(state.bridge):
            return f"bridge {state.bridge} is gone"
        for host in state.hosts.values():
            if self.verified_pid(host) is None:
                return f"host {host.name} is not running"
            if host.veth is None or not link_exists(host.veth):
                return f"host {host.name}'s link {host.veth} is gone"
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            answers = dict(zip(state.hosts, pool.map(self.ssh_ok, [h.ip for h in state.hosts.values()]), strict=True))
        silent = [name for name, ok in answers.items() if not ok]
        if silent:
            return f"host(s) {', '.join(silent)} do not answer SSH"
        return None

    # -- up ---------------------------------------------------------------------------------

    def up(self, rebuild: bool = False, ssh_wait_s: float = SSH_WAIT_S) -> LabState:
        cfg = self.config
        if cfg.bridge is None or cfg.network is None:
            raise LabError(f"lab {cfg.name} needs --bridge and --subnet (only the default lab has defaults)")
        started = time.monotonic()
        with file_lock(self.lock, LOCK_WAIT_S, f"lab {cfg.name}"):
            self.ensure_credentials()
            state = load_state(self.state_dir)
            if state is not None and not rebuild:
                self._heal_links(state)
                reason = self.healthy(state)
                if reason is None:
                    log.info("lab %s is already up and healthy; nothing to do", cfg.name)
                    self.print_summary(state)
                    return state
                log.info("lab %s is not healthy (%s): recreating it", cfg.name, reason)
            if state is not None:
                self._teardown(state)
            self._clean_leftovers()
            self._check_subnet()
            caches = {suite: Caches(suite, self.environ) for suite in cfg.suites}
            for suite_caches in caches.values():
                suite_caches.ensure(rebuild=rebuild)
            state = self._boot(caches)
            self._wait_for_ssh(state, ssh_wait_s)
            self._refresh_apt_lists(state)
        for suite, suite_caches in caches.items():
            for what, secs in suite_caches.timings.items():
                log.info("timing: %s %s build %.1f s", suite, what, secs)
        log.info("lab %s is up (%.1f s)", cfg.name, time.monotonic() - started)
        self.print_summary(state)
        return state

    def _heal_links(self, state: LabState) -> None:
        """Reconnects hosts a partition drill left cut off, rather than recreating them."""
        for host in state.hosts.values():
            if host.veth and link_operstate(host.veth) == "down":
                log.info("host %s: link %s was down (a partition); bringing it up", host.name, host.veth)
                run(["ip", "link", "set", host.veth, "up"])

    def _check_subnet(self) -> None:
        cfg = self.config
        assert cfg.network is not None and cfg.bridge is not None
        routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
        conflicts = subnet_conflicts(routes, cfg.network, cfg.bridge)
        if conflicts:
            raise LabError(
                f"subnet {cfg.network} is already routed on this machine: {'; '.join(conflicts)}. "
                "Pick another one with --subnet."
            )

    def _create_bridge(self) -> None:
        cfg = self.config
        assert cfg.bridge is not None and cfg.network is not None
        bridge = cfg.bridge
        run(["ip", "link", "add", bridge, "type", "bridge"], what=f"creating bridge {bridge}")
        run(["ip", "addr", "add", f"{cfg.gateway}/{cfg.network.prefixlen}", "dev", bridge])
        # No IPv6 addresses on the bridge: the lab is IPv4 only and must not route anywhere.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").write_text("1\n")
        run(["ip", "link", "set", bridge, "up"])

    def _prepare_root(self, caches: Caches, spec: HostSpec, pubkey: str) -> tuple[Path, str]:
        """Mounts the host's root over its own suite's image and writes what makes it this host."""
        cfg = self.config
        assert cfg.network is not None
        workdir = cfg.machine_dir(spec.name)
        for sub in ("upper", "work", "root"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        mode = mount_root(caches.image, workdir)
        root = workdir / "root"
        write_file(root / "etc/hostname", spec.name + "\n")
        marker = {"lab": cfg.name, "host": spec.name, "machine": cfg.machine(spec.name)}
        write_file(root / LAB_HOST_MARKER, json.dumps(marker) + "\n")
        write_file(root / "etc/hosts", render_hosts_file(cfg.hosts))
        write_file(root / "etc/machine-id", uuid.uuid4().hex + "\n", mode=0o444)
        write_file(root / "etc/systemd/network/10-host0.network", render_network_file(spec.ip, cfg.network))
        ssh_dir = root / "root/.ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        ssh_dir.chmod(0o700)
        write_file(ssh_dir / "authorized_keys", pubkey, mode=0o600)
        host_key = root / "etc/ssh/ssh_host_ed25519_key"
        host_key.unlink(missing_ok=True)
        host_key.with_suffix(".pub").unlink(missing_ok=True)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{spec.name}", "-f", str(host_key)],
            what=f"generating {spec.name}'s host key",
        )
        return root, mode

    def _boot(self, caches: Mapping[str, Caches]) -> LabState:
        """Boots each host from its own suite's image, with that suite's apt repository bound."""
        cfg = self.config
        assert cfg.bridge is not None and cfg.network is not None
        for sub in ("run", "logs"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        pubkey = self.key.with_suffix(".pub").read_text()
        default = caches.get(cfg.suite) or Caches(cfg.suite, self.environ)  # paths only
        state = LabState(
            name=cfg.name,
            bridge=cfg.bridge,
            subnet=str(cfg.network),
            suite=cfg.suite,
            image=str(default.image),
            apt_repo=str(default.repo),
            hosts={},
            started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        )
        self._create_bridge()
        save_state(self.state_dir, state)
        known_hosts = []
        for spec in cfg.hosts:
            machine = cfg.machine(spec.name)
            log_path = self.state_dir / "logs" / f"{spec.name}.log"
            host_caches = caches[spec.suite]
            host = HostState(
                name=spec.name,
                machine=machine,
                ip=str(spec.ip),
                root=str(cfg.machine_dir(spec.name) / "root"),
                log=str(log_path),
                suite=spec.suite,
                image=str(host_caches.image),
                apt_repo=str(host_caches.repo),
            )
            state.hosts[spec.name] = host
            save_state(self.state_dir, state)  # a failure from here on leaves what `down` needs
            root, host.root_mode = self._prepare_root(host_caches, spec, pubkey)
            host_pub = (root / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()
            known_hosts.append(f"{spec.ip},{spec.name} {host_pub[0]} {host_pub[1]}")
            cmd = [
                "systemd-nspawn", "-q", "-D", host.root, "--boot", f"--machine={machine}",
                f"--hostname={spec.name}", "--register=no", "--keep-unit",
                f"--network-bridge={cfg.bridge}", f"--bind-ro={host_caches.repo}:{APT_REPO_MOUNT}",
                "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            ]  # fmt: skip
            with log_path.open("w") as out:
                out.write(f"$ {shlex.join(cmd)}\n")
                out.flush()
                proc = subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            host.pid = proc.pid
            write_file(self.state_dir / "run" / f"{spec.name}.pid", f"{proc.pid}\n")
            save_state(self.state_dir, state)
            log.info("started %s (%s, %s, %s) as nspawn pid %d", spec.name, machine, spec.ip, spec.suite, proc.pid)
        write_file(self.known_hosts, "\n".join(known_hosts) + "\n")
        write_file(
            self.state_dir / "ssh_config",
            render_ssh_config(cfg.hosts, self.key, self.known_hosts),
        )
        for host in state.hosts.values():
            host.veth = self._find_veth(host)
        save_state(self.state_dir, state)
        return state

    def _find_veth(self, host: HostState) -> str:
        """The host-side interface nspawn created on the bridge (predicted, then confirmed)."""
        bridge = self.config.bridge
        assert bridge is not None
        predicted = veth_name(host.machine)
        full = f"vb-{host.machine}"
        deadline = time.monotonic() + VETH_WAIT_S
        while time.monotonic() < deadline:
            if predicted in bridge_members(bridge):
                return predicted
            for member in bridge_members(bridge):  # a systemd whose naming rule differs
                if full in link_altnames(member) or member == full[: IFNAMSIZ - 1]:
                    log.warning("host %s's link is %s, not the predicted %s", host.name, member, predicted)
                    return member
            if host.pid is None or not pid_alive(host.pid):
                raise LabError(
                    f"host {host.name}'s systemd-nspawn exited during start; its console log "
                    f"{host.log} ends with:\n{tail(Path(host.log), 30)}"
                )
            time.sleep(0.1)
        raise LabError(
            f"host {host.name}'s link {predicted} did not join bridge {bridge} within "
            f"{VETH_WAIT_S:.0f} s; its console log {host.log} ends with:\n{tail(Path(host.log), 30)}"
        )

    def _wait_for_ssh(self, state: LabState, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s

        def wait_one(host: HostState) -> str | None:
            while time.monotonic() < deadline:
                if self.verified_pid(host) is None:
                    return (
                        f"host {host.name}'s systemd-nspawn (pid {host.pid}) exited; its console log "
                        f"{host.log} ends with:\n{tail(Path(host.log), 30)}"
                    )
                if self.ssh_ok(host.ip):
                    return None
                time.sleep(0.5)
            return (
                f"host {host.name} did not answer SSH at {host.ip} within {wait_s:.0f} s; its console "
                f"log is {host.log}, last lines:\n{tail(Path(host.log), 30)}"
            )

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(state.hosts) or 1) as pool:
            problems = [p for p in pool.map(wait_one, state.hosts.values()) if p]
        if problems:
            raise LabError(
                "\n".join(problems)
                + f"\nThe lab is left running for inspection; `lab.py down --name {state.name}` removes it."
            )

    def _refresh_apt_lists(self, state: LabState) -> None:
        """Index the local apt repository once, as a provisioned server's apt lists would be.

        A fresh image has empty lists that still look recent to Ansible's ``cache_valid_time``.
        """
        for host in state.hosts.values():
            run(self.exec_argv(host.name, ["apt-get", "update", "-qq"]), what=f"apt-get update on {host.name}")

    # -- down -------------------------------------------------------------------------------

    def down(self, purge: bool = False) -> None:
        cfg = self.config
        started = time.monotonic()
        with file_lock(self.lock, LOCK_WAIT_S, f"lab {cfg.name}"):
            state = load_state(self.state_dir)
            if state is not None:
                self._teardown(state)
            self._clean_leftovers()
            if purge:
                for sub in ("ssh", "secrets", "run", "logs"):
                    shutil.rmtree(self.state_dir / sub, ignore_errors=True)
                for name in ("known_hosts", "ssh_config"):
                    (self.state_dir / name).unlink(missing_ok=True)
                log.info("removed lab %s's keys and secrets from %s", cfg.name, self.state_dir)
        log.info("lab %s is down (%.1f s)", cfg.name, time.monotonic() - started)

    def _stop(self, hosts: Sequence[HostState]) -> None:
        """SIGTERM each verified nspawn pid, wait, SIGKILL what is left (and its PID 1)."""
        running: dict[str, tuple[int, int | None]] = {}
        for host in hosts:
            pid = self.verified_pid(host)
            if pid is not None:
                running[host.name] = (pid, self.init_pid(host))
            elif host.pid is not None:
                log.info("host %s: pid %d is no longer its systemd-nspawn; nothing to stop", host.name, host.pid)
        for name, (pid, _) in running.items():
            log.info("stopping %s (nspawn pid %d)", name, pid)
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline and any(pid_alive(p) for p, _ in running.values()):
            time.sleep(0.2)
        for name, (pid, init) in running.items():
            if pid_alive(pid):
                log.warning("host %s did not stop within %.0f s; killing nspawn pid %d", name, STOP_WAIT_S, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                if init is not None and pid_alive(init):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(init, signal.SIGKILL)
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline and any(pid_alive(p) for p, _ in running.values()):
            time.sleep(0.2)
        still = [f"{n} (pid {p})" for n, (p, _) in running.items() if pid_alive(p)]
        if still:
            raise LabError(f"could not stop {', '.join(still)}: they survived SIGKILL for {KILL_WAIT_S:.0f} s")

    def orphan_inits(self) -> list[int]:
        """PID 1s of this lab's hosts whose systemd-nspawn is gone (killed from outside)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                status = (entry / "status").read_text()
                if b"container=systemd-nspawn" not in environ:
                    continue
                marker = (entry / "root" / LAB_HOST_MARKER).read_text()
            except OSError:
                continue
            if not is_lab_init(environ, status, marker, self.config.name):
                continue
            ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
            parent = proc_argv(ppid) or []
            if not parent or Path(parent[0]).name != "systemd-nspawn":
                found.append(int(entry.name))
        return found

    def _kill_orphan_inits(self) -> None:
        orphans = self.orphan_inits()
        for pid in orphans:
            log.warning(
                "a host of lab %s runs without its systemd-nspawn (PID 1 is %d); killing it", self.config.name, pid
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the PID 1 of a namespace: takes the whole host down
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline and any(pid_alive(p) for p in orphans):
            time.sleep(0.2)
        still = [str(p) for p in orphans if pid_alive(p)]
        if still:
            raise LabError(f"orphaned host init(s) {', '.join(still)} survived SIGKILL for {KILL_WAIT_S:.0f} s")

    def _teardown(self, state: LabState) -> None:
        hosts = list(state.hosts.values())
        self._stop(hosts)
        self._kill_orphan_inits()
        for host in hosts:
            if host.veth and link_exists(host.veth):
                run(["ip", "link", "del", host.veth], check=False)
            remove_tree(Path(host.root).parent)
            (self.state_dir / "run" / f"{host.name}.pid").unlink(missing_ok=True)
        self._remove_empty_machine_dirs()
        if is_bridge(state.bridge):
            run(["ip", "link", "del", state.bridge], what=f"deleting bridge {state.bridge}")
        (self.state_dir / "state.json").unlink(missing_ok=True)

    def _remove_empty_machine_dirs(self) -> None:
        lab_dir = MACHINES_DIR / self.config.name
        for path in (lab_dir / "machines", lab_dir):
            with contextlib.suppress(OSError):
                path.rmdir()

    def _clean_leftovers(self) -> None:
        """Removes what an earlier run of this lab left without a state file to say so."""
        cfg = self.config
        machines_root = MACHINES_DIR / cfg.name / "machines"
        names = {h.name for h in cfg.hosts}
        if machines_root.is_dir():
            names |= {p.name for p in machines_root.iterdir()}
        orphans = []
        for name in sorted(names):
            machine = cfg.machine(name)
            root = cfg.machine_dir(name) / "root"
            for pid in self.orphan_pids(machine, root):
                log.info("found a leftover nspawn for %s (pid %d)", machine, pid)
                orphans.append(HostState(name=name, machine=machine, ip="", root=str(root), log="", pid=pid))
        self._stop(orphans)
        self._kill_orphan_inits()
        for name in sorted(names):
            veth = veth_name(cfg.machine(name))
            if link_exists(veth):
                log.info("deleting leftover link %s", veth)
                run(["ip", "link", "del", veth], check=False)
            workdir = cfg.machine_dir(name)
            if workdir.exists():
                log.info("removing leftover host directory %s", workdir)
                remove_tree(workdir)
            (self.state_dir / "run" / f"{name}.pid").unlink(missing_ok=True)
        self._remove_empty_machine_dirs()
        if cfg.bridge is not None and link_exists(cfg.bridge):
            if not is_bridge(cfg.bridge):
                raise LabError(f"interface {cfg.bridge} exists and is not a bridge; pick another --bridge")
            members = bridge_members(cfg.bridge)
            if members:
                raise LabError(
                    f"bridge {cfg.bridge} exists with members {', '.join(members)} this lab did not "
                    "create; pick another --bridge or remove them"
                )
            log.info("deleting leftover bridge %s", cfg.bridge)
            run(["ip", "link", "del", cfg.bridge], what=f"deleting bridge {cfg.bridge}")

    # -- status, exec, partitions -----------------------------------------------------------

    def require_state(self) -> LabState:
        state = load_state(self.state_dir)
        if state is None:
            raise LabError(f"lab {self.config.name} is not up (no {self.state_dir / 'state.json'})")
        return state

    def host(self, name: str) -> HostState:
        state = self.require_state()
        if name not in state.hosts:
            raise LabError(f"lab {state.name} has no host {name!r}; it has {', '.join(state.hosts)}")
        return state.hosts[name]

    def status(self) -> dict[str, Any]:
        state = load_state(self.state_dir)
        if state is None:
            return {"name": self.config.name, "up": False, "hosts": {}}
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            ssh = list(pool.map(self.ssh_ok, [h.ip for h in state.hosts.values()]))
        hosts = {}
        for host, ssh_up in zip(state.hosts.values(), ssh, strict=True):
            hosts[host.name] = {
                "machine": host.machine,
                "ip": host.ip,
                "suite": host.suite,
                "pid": self.verified_pid(host),
                "veth": host.veth,
                "link": link_operstate(host.veth) if host.veth else "absent",
                "ssh": ssh_up,
            }
        return {
            "name": state.name,
            "up": all(h["pid"] and h["ssh"] for h in hosts.values()),
            "bridge": state.bridge,
            "subnet": state.subnet,
            "suite": state.suite,
            "state_dir": str(self.state_dir),
            "hosts": hosts,
        }

    def set_link(self, name: str, up: bool) -> None:
        host = self.host(name)
        if host.veth is None or not link_exists(host.veth):
            raise LabError(f"host {name}'s link {host.veth} does not exist; is the lab up?")
        run(["ip", "link", "set", host.veth, "up" if up else "down"])
        if not up:
            log.info("host %s: link %s is down (partitioned)", name, host.veth)
            return
        # Forget the failed ARP entry the cut left, then wait until the host answers again.
        state = self.require_state()
        run(["ip", "neigh", "flush", "to", host.ip, "dev", state.bridge], check=False)
        deadline = time.monotonic() + LINK_HEAL_WAIT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host.ip, 22), timeout=1):
                log.info("host %s: link %s is up and the host answers", name, host.veth)
                return
            time.sleep(0.2)
        log.warning(
            "host %s: link %s is up but port 22 did not answer within %.0f s", name, host.veth, LINK_HEAL_WAIT_S
        )

    def exec_argv(self, name: str, command: Sequence[str]) -> list[str]:
        host = self.host(name)
        init = self.init_pid(host)
        if init is None:
            raise LabError(f"host {name} is not running")
        env = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME=/root",
            "LANG=C.UTF-8",
            f"TERM={self.environ.get('TERM', 'dumb')}",
        ]
        return ["nsenter", "-t", str(init), "-a", "--", "/usr/bin/env", "-i", *env, *command]

    def print_summary(self, state: LabState) -> None:
        print(f"lab {state.name}: {len(state.hosts)} hosts on {state.bridge} {state.subnet} ({state.suite})")
        for host in state.hosts.values():
            print(
                f"  {host.name:<10} {host.ip:<15} {host.suite:<9} machine {host.machine:<16} pid {host.pid}  "
                f"link {host.veth}"
            )
        print(f"  ssh:     ssh -F {self.state_dir / 'ssh_config'} {next(iter(state.hosts), 'HOST')}")
        print(f"  secrets: {self.state_dir / 'secrets'}/")


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--name", default=DEFAULT_NAME, help=f"lab name (default {DEFAULT_NAME})")
    common.add_argument("--bridge", help=f"bridge interface (default lab: {DEFAULT_BRIDGE})")
    common.add_argument("--subnet", help=f"IPv4 subnet, bridge gets .1 (default lab: {DEFAULT_SUBNET})")
    common.add_argument(
        "--hosts",
        help=(
            "comma-separated host names, each optionally name=ip and/or @suite, e.g. "
            f"redis1,new1@trixie,new2=10.147.29.31@trixie (default {','.join(DEFAULT_HOSTS)}; "
            "a host without @suite gets --suite)"
        ),
    )
    common.add_argument(
        "--suite",
        choices=SUPPORTED_SUITES,
        help=f"Debian suite of hosts that name none (default $LAB_SUITE or {DEFAULT_SUITE})",
    )
    common.add_argument("--state-dir", help="state directory (default <repo>/.lab for the default lab)")
    common.add_argument("-v", "--verbose", action="store_true", help="log every command")

    parser = argparse.ArgumentParser(prog="lab.py", description="systemd-nspawn test lab for redis-ha-kit", parents=[])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[common], help="bring the lab up (idempotent)")
    up.add_argument("--rebuild", action="store_true", help="rebuild the base image and apt repository")
    up.add_argument("--timeout", type=float, default=SSH_WAIT_S, help="seconds to wait for SSH")
    down = sub.add_parser("down", parents=[common], help="stop and remove the hosts")
    down.add_argument("--purge", action="store_true", help="also remove the lab's SSH key and secrets")
    build = sub.add_parser("build", parents=[common], help="build the base image and apt repository")
    build.add_argument("--rebuild", action="store_true", help="rebuild even when current")
    status = sub.add_parser("status", parents=[common], help="show the hosts and whether they answer")
    status.add_argument("--json", action="store_true", help="print JSON")
    for verb, text in (("link-down", "cut a host off the bridge"), ("link-up", "reconnect a host")):
        p = sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("host")
    ex = sub.add_parser("exec", parents=[common], help="run a command inside a host: exec HOST -- CMD")
    ex.add_argument("host")
    ex.add_argument("cmd", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="lab: %(message)s",
        stream=sys.stderr,
    )
    try:
        if os.geteuid() != 0:
            raise LabError("lab.py needs root (network interfaces, mounts, systemd-nspawn)")
        config = config_from_args(
            name=args.name,
            bridge=args.bridge,
            subnet=args.subnet,
            hosts=args.hosts,
            suite=args.suite,
            state_dir=args.state_dir,
            environ=os.environ,
        )
        lab = Lab(config)
        if args.command == "up":
            lab.up(rebuild=args.rebuild, ssh_wait_s=args.timeout)
        elif args.command == "down":
            lab.down(purge=args.purge)
        elif args.command == "build":
            for suite in config.suites:
                caches = Caches(suite, os.environ)
                caches.ensure(rebuild=args.rebuild)
                print(f"{suite} image: {caches.image}\n{suite} apt repository: {caches.repo}")
        elif args.command == "status":
            report = lab.status()
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                print_status(report)
            return 0 if report["up"] else 3
        elif args.command in {"link-down", "link-up"}:
            lab.set_link(args.host, up=args.command == "link-up")
        elif args.command == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                raise LabError("exec needs a command: lab.py exec HOST -- CMD ...")
            argv_exec = lab.exec_argv(args.host, cmd)
            sys.stdout.flush()
            os.execvp(argv_exec[0], argv_exec)  # noqa: S606 (replaces this process on purpose)
    except LabError as exc:
        log.error("error: %s", exc)
        return 1
    return 0


def print_status(report: Mapping[str, Any]) -> None:
    if not report["hosts"]:
        print(f"lab {report['name']} is down")
        return
    print(
        f"lab {report['name']}: {'up' if report['up'] else 'DEGRADED'} on {report['bridge']} "
        f"{report['subnet']} ({report['suite']})"
    )
    for name, h in report["hosts"].items():
        print(
            f"  {name:<10} {h['ip']:<15} {h.get('suite', ''):<9} pid {h['pid'] or '-':<8} "
            f"link {h['veth']} {h['link']:<6} ssh {'ok' if h['ssh'] else 'NO'}"
        )


if __name__ == "__main__":
    sys.exit(main())
