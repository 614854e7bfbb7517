"""Inventory validation for redis-ha-kit: every problem, in one list of sentences.

The preflight play (ansible/preflight.yml) gathers what the inventory says into one
dict and this pure function returns what is wrong with it, so a user fixes everything
in one go instead of one failed run per mistake.

Settings a host can override (ports, TLS files, the redis and sentinel roles' settings)
arrive per host, role defaults applied, from ``host_settings``; a problem shared by
several hosts is reported once, naming them all.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
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
_WHOLE = re.compile(r"^\s*[+-]?\d+\s*$")

REDIS_PORTS = ("redis_ha_redis_port", "redis_ha_exporter_redis_port")
SENTINEL_PORTS = ("redis_ha_sentinel_port", "redis_ha_exporter_sentinel_port")
TLS_SOURCES = {
    "redis_ha_tls_ca_src": ("the CA certificate", "group_vars/all"),
    "redis_ha_tls_cert_src": ("that node's certificate", "its host_vars"),
    "redis_ha_tls_key_src": ("that node's private key", "its host_vars"),
    "redis_exporter_tls_cert_src": ("the exporters' own client certificate", "its host_vars"),
    "redis_exporter_tls_key_src": ("the exporters' own client key (not the node's server key)", "its host_vars"),
}
# Sentinel's hello channel: a client that may publish there can steer every Sentinel.
HELLO_CHANNEL = "__sentinel__:hello"
# Sentinel settings that must be whole numbers of at least this much.
SENTINEL_MINIMUMS = {
    "sentinel_down_after_milliseconds": (1, "of milliseconds above 0 (default 5000)"),
    "sentinel_failover_timeout": (1, "of milliseconds above 0 (default 60000)"),
    "sentinel_parallel_syncs": (1, "of at least 1 (default 1)"),
}
ALLOW_UNSAFE = "redis_extra_config_allow_unsafe"
_UNSET = object()
# redis_extra_config directives refused unless redis_extra_config_allow_unsafe: true, with why.
# Where safe values are given, only other values are refused (protected-mode yes is fine).
_KIT_AUTH = "is set by the kit (ACL file and the redis_*_password variables)"
_UNSAFE_DIRECTIVES: dict[str, tuple[tuple[str, ...], str]] = {
    "protected-mode": (("yes",), "turns protected mode off"),
    "enable-debug-command": (("no",), "lets clients run DEBUG"),
    "enable-protected-configs": (("no",), "lets clients change protected settings such as dir"),
    "enable-module-command": (("no",), "lets clients load modules (code) into Redis"),
    "rename-command": ((), "renames a command Sentinel and the kit call by name (CONFIG, REPLICAOF, ACL...)"),
    "aclfile": ((), _KIT_AUTH),
    "requirepass": ((), _KIT_AUTH),
    "masterauth": ((), _KIT_AUTH),
    "masteruser": ((), _KIT_AUTH),
    "primaryauth": ((), _KIT_AUTH),
    "primaryuser": ((), _KIT_AUTH),
    "user": ((), _KIT_AUTH),
    "replicaof": ((), "is set by the kit and then by Sentinel"),
    "slaveof": ((), "is set by the kit and then by Sentinel"),
    "bind": ((), "is set by the kit (use redis_ha_address and redis_bind_extra_addresses)"),
    "port": ((), "is set by the kit (use redis_ha_redis_port)"),
    "tls-port": ((), "is set by the kit (use redis_ha_redis_port with redis_ha_tls: true)"),
}
# Directives whose value is a secret and never shown.
_SECRET_DIRECTIVES = {"requirepass", "masterauth", "primaryauth", "user"}


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def _whole(value: Any) -> int | None:
    """The whole number a setting holds (6379, "6379", 6379.0), else None (True, "6379x", 1.5)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE.match(value):
        return int(value)
    return None


def _true(value: Any) -> bool:
    """Ansible's notion of a true boolean (true, yes, on, 1)."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "on", "1", "y", "t"}
    return value is True or (isinstance(value, int) and value == 1)


def _directive_value(value: Any) -> str:
    """A redis_extra_config value as it lands in redis.conf (YAML's no/yes arrive as booleans)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).strip().strip("\"'").lower()


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


def _address_problems(hosts: Iterable[str], addresses: Mapping[str, Any]) -> list[str]:
    problems = []
    seen: dict[str, str] = {}
    for host in hosts:
        address = str(addresses.get(host) or "")
        if not _is_ip(address):
            problems.append(
                f"Host {host} has address '{address}', which is not an IP address: set "
                "redis_ha_address (or ansible_host) to its private IP."
            )
            continue
        ip = ipaddress.ip_address(address)
        if ip.is_unspecified or ip.is_loopback:
            kind = "a wildcard" if ip.is_unspecified else "a loopback address"
            problems.append(
                f"Host {host} has address {address}, {kind}: the other nodes cannot reach it there; set "
                "redis_ha_address (or ansible_host) to its private IP."
            )
        if address in seen:
            problems.append(
                f"Hosts {seen[address]} and {host} share the address {address}: every node needs "
                "its own redis_ha_address."
            )
        else:
            seen[address] = host
    return problems


def _port_problems(settings: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    problems = []
    ports: dict[str, int] = {}
    for name in names:
        if name not in settings:
            continue
        port = _whole(settings[name])
        if port is None or not 1 <= port <= 65535:
            problems.append(
                f"{name} is {_show(settings[name])} on {{hosts}}: set it to a whole number from 1 to 65535."
            )
            continue
        same = [other for other, value in ports.items() if value == port]
        if same:
            problems.append(
                f"{name} and {same[0]} are both {port} on {{hosts}}: give every service on a host its own port."
            )
        ports[name] = port
    return problems


def _sentinel_problems(settings: Mapping[str, Any]) -> list[str]:
    problems = []
    for name, (minimum, expected) in SENTINEL_MINIMUMS.items():
        if name in settings:
            number = _whole(settings[name])
            if number is None or number < minimum:
                problems.append(f"{name} is {_show(settings[name])} on {{hosts}}: set it to a whole number {expected}.")
    return problems


def _bind_problems(extra: Any) -> list[str]:
    if not isinstance(extra, list):
        return [
            f"redis_bind_extra_addresses is {_show(extra)} on {{hosts}}: make it a list of this host's IP addresses."
        ]
    problems = []
    for entry in extra:
        address = str(entry).strip().lstrip("-")
        if address in {"*", "::*"} or (_is_ip(address) and ipaddress.ip_address(address).is_unspecified):
            problems.append(
                f"redis_bind_extra_addresses lists {entry}, a wildcard, on {{hosts}}: Redis would listen on "
                "every interface; list only private addresses of the host."
            )
        elif not _is_ip(address):
            problems.append(
                f"redis_bind_extra_addresses lists '{entry}', which is not an IP address, on {{hosts}}: "
                "Redis binds addresses only; list the host's private IPs."
            )
        elif ipaddress.ip_address(address).is_loopback:
            problems.append(
                f"redis_bind_extra_addresses lists {entry}, a loopback address, on {{hosts}}: 127.0.0.1 is "
                "always bound; list only private addresses of the host."
            )
    return problems


def _extra_config_problems(extra: Any, allow_unsafe: bool) -> list[str]:
    if not isinstance(extra, Mapping):
        return [f"redis_extra_config is {_show(extra)} on {{hosts}}: make it a dict of redis.conf directive: value."]
    problems = []
    for key, raw in extra.items():
        if "\n" in str(key) or "\n" in str(raw):
            problems.append(
                f"redis_extra_config's '{str(key).splitlines()[0] if str(key) else key}' holds a line break on "
                "{hosts}: write one directive per key."
            )
            continue
        name = str(key).split()[0].lower() if str(key).split() else ""
        if name not in _UNSAFE_DIRECTIVES or allow_unsafe:
            continue
        safe_values, why = _UNSAFE_DIRECTIVES[name]
        value = _directive_value(raw)
        if safe_values and value in safe_values:
            continue
        shown = name if name in _SECRET_DIRECTIVES or not safe_values else f"{name} {value}"
        problems.append(
            f"redis_extra_config sets '{shown}' on {{hosts}}, which {why}: remove it, or set "
            f"{ALLOW_UNSAFE}: true if you accept that."
        )
    return problems


def _redis_problems(settings: Mapping[str, Any], replicas: int, app_db: Any) -> list[str]:
    problems = []
    if "redis_maxmemory_mb" in settings:
        megabytes = _whole(settings["redis_maxmemory_mb"])
        if megabytes is None or megabytes < 0:
            problems.append(
                f"redis_maxmemory_mb is {_show(settings['redis_maxmemory_mb'])} on {{hosts}}: set it to a whole "
                "number of MiB (0: no limit), about half the host's RAM."
            )
    policy = settings.get("redis_maxmemory_policy", "noeviction")
    if policy != "noeviction" and not _true(settings.get("redis_allow_eviction")):
        problems.append(
            f"redis_maxmemory_policy is {policy} on {{hosts}}: RQ loses jobs when Redis evicts keys. Keep "
            "noeviction, or set redis_allow_eviction: true if this cluster only holds a cache."
        )
    if "redis_min_replicas_to_write" in settings:
        minimum = _whole(settings["redis_min_replicas_to_write"])
        if minimum is None or minimum < 0:
            problems.append(
                f"redis_min_replicas_to_write is {_show(settings['redis_min_replicas_to_write'])} on {{hosts}}: "
                "set it to a whole number from 0 (off) to the number of replicas."
            )
        elif minimum > replicas:
            problems.append(
                f"redis_min_replicas_to_write is {minimum} on {{hosts}} but the cluster has {replicas} replica(s): "
                f"the master would refuse every write; set it to at most {replicas} (1 is usual)."
            )
    databases = _whole(settings.get("redis_databases", 16))
    if databases is None or databases < 1:
        problems.append(
            f"redis_databases is {_show(settings.get('redis_databases'))} on {{hosts}}: set it to a whole number "
            "of at least 1 (default 16)."
        )
    elif app_db is not None:
        number = _whole(app_db)
        if number is None or not 0 <= number < databases:
            problems.append(
                f"redis_ha_app_db is {_show(app_db)} but redis_databases is {databases} on {{hosts}}: databases are "
                f"numbered 0 to {databases - 1}; choose one of them (or raise redis_databases)."
            )
    problems.extend(_bind_problems(settings.get("redis_bind_extra_addresses", [])))
    problems.extend(
        _app_channel_problems(settings.get("redis_acl_app_rules", ""), settings.get("redis_acl_app_channels", ["rq:*"]))
    )
    problems.extend(_extra_config_problems(settings.get("redis_extra_config", {}), _true(settings.get(ALLOW_UNSAFE))))
    return problems


def _app_channel_problems(rules: Any, channels: Any) -> list[str]:
    """The app's channels may never reach Sentinel's hello channel (Redis patterns are globs, as fnmatch's)."""
    if not isinstance(channels, list) or not all(isinstance(channel, str) and channel for channel in channels):
        return [
            f"redis_acl_app_channels is {_show(channels)} on {{hosts}}: set it to a list of channel patterns, "
            'e.g. ["rq:*"].'
        ]
    words = str(rules or "").split()
    granted = [word[1:] for word in words if word.startswith("&")] + ["*" for word in words if word == "allchannels"]
    hello = [pattern for pattern in [*channels, *granted] if fnmatch.fnmatchcase(HELLO_CHANNEL, pattern)]
    if not hello:
        return []
    return [
        f"The app user may use channel pattern(s) {', '.join(sorted(set(hello)))} on {{hosts}}, which match "
        f"{HELLO_CHANNEL}: a forged hello message there steers every Sentinel. List only your own channels in "
        "redis_acl_app_channels (default rq:*) and none in redis_acl_app_rules."
    ]


def _tls_problems(settings: Mapping[str, Any], files_found: Iterable[str]) -> list[str]:
    problems = []
    cert_key = str(settings.get("redis_ha_tls_key_src") or "")
    if cert_key and cert_key == str(settings.get("redis_exporter_tls_key_src") or ""):
        problems.append(
            "redis_exporter_tls_key_src is the node's own server key on {hosts}: give the exporters a client "
            "certificate and key of their own."
        )
    found = set(files_found)
    for name, (what, where) in TLS_SOURCES.items():
        path = str(settings.get(name) or "")
        if not path:
            problems.append(
                f"redis_ha_tls is true but {name} is empty on {{hosts}}: set it (in {where}) to {what}, "
                "a file on the controller."
            )
        elif path not in found:
            problems.append(
                f"{name} is '{path}' on {{hosts}}, which is not a file on the controller: point it at {what} "
                "(an absolute path, or relative to the playbook directory)."
            )
    return problems


def _per_host(hosts: Iterable[str], check: Callable[[str], list[str]]) -> list[str]:
    """Run ``check`` for each host; a sentence several hosts share is reported once, naming them all."""
    affected: dict[str, list[str]] = {}
    for host in hosts:
        for sentence in check(host):
            affected.setdefault(sentence, []).append(host)
    return [sentence.replace("{hosts}", ", ".join(names)) for sentence, names in affected.items()]


def inventory_problems(observed: dict[str, Any]) -> list[str]:
    """Return every problem with the inventory as a sentence saying what to fix."""
    problems: list[str] = []
    redis_hosts = list(observed.get("redis_hosts") or [])
    sentinel_hosts = list(observed.get("sentinel_hosts") or [])
    addresses: dict[str, str] = dict(observed.get("addresses") or {})
    settings: dict[str, Mapping[str, Any]] = dict(observed.get("hosts") or {})

    if not redis_hosts:
        problems.append("Group 'redis' is empty: list the Redis nodes (one primary plus replicas).")
    elif len(redis_hosts) < 2:
        problems.append(
            f"Group 'redis' has {len(redis_hosts)} host: list at least 2 (a primary plus a replica), "
            "or Sentinel has no replica to promote when the master is lost."
        )
    count = len(sentinel_hosts)
    # An even number is allowed (4 tolerates no more lost Sentinels than 3, but it is where a
    # cluster stands between adding or retiring Sentinels one at a time).
    if count < 3:
        problems.append(
            f"Group 'sentinel' has {count} host(s): use at least 3 (3 or 5), so "
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

    nodes = list(dict.fromkeys(redis_hosts + sentinel_hosts))
    problems.extend(_address_problems(nodes, addresses))

    # Each node may have its own flavor: a cluster moving from Redis to Valkey has both for a while
    # (the discover play refuses a replica that cannot load what the master writes).
    def flavor_problems(host: str) -> list[str]:
        flavor = (settings.get(host) or {}).get("redis_ha_flavor", observed.get("flavor"))
        if flavor in FLAVORS:
            return []
        return [f"redis_ha_flavor is {_show(flavor)} on {{hosts}}: choose one of: {', '.join(FLAVORS)}."]

    problems.extend(_per_host(nodes, flavor_problems))
    master_name = str(observed.get("master_name") or "")
    if not _MASTER_NAME.match(master_name):
        problems.append(f"redis_ha_master_name is '{master_name}'; use letters, digits, '.', '_' or '-'.")

    deploy_dir = str(observed.get("deploy_dir") or "")
    if "/ansible_collections/" in deploy_dir:
        problems.append(
            f"redis_ha_deploy_dir is {deploy_dir}, inside an installed Ansible collection (its default follows the "
            "playbook, and the collection's playbooks live there): set redis_ha_deploy_dir in group_vars/all to a "
            "directory of your own for the app's .env and the scrape config, such as .deploy/<env> beside the inventory."
        )

    problems.extend(_password_problems(dict(observed.get("passwords") or {})))

    def ports(host: str) -> list[str]:
        names = (REDIS_PORTS if host in redis_hosts else ()) + (SENTINEL_PORTS if host in sentinel_hosts else ())
        return _port_problems(settings.get(host) or {}, names)

    app_db = observed.get("app_db")
    replicas = max(len(redis_hosts) - 1, 0)
    problems.extend(_per_host(nodes, ports))
    problems.extend(_per_host(redis_hosts, lambda host: _redis_problems(settings.get(host) or {}, replicas, app_db)))
    problems.extend(_per_host(sentinel_hosts, lambda host: _sentinel_problems(settings.get(host) or {})))

    default_tls = _true(observed.get("tls"))
    tls = {host: _true((settings.get(host) or {}).get("redis_ha_tls", default_tls)) for host in nodes}
    if len(set(tls.values())) > 1:
        problems.append(
            f"redis_ha_tls is true on {', '.join(h for h in nodes if tls[h])} but false on "
            f"{', '.join(h for h in nodes if not tls[h])}: set it once, in group_vars/all."
        )
    files_found = list(observed.get("tls_files_found") or [])
    tls_hosts = [host for host in nodes if tls[host]]
    problems.extend(_per_host(tls_hosts, lambda host: _tls_problems(settings.get(host) or {}, files_found)))
    return problems


def host_settings(
    hosts: Iterable[str], hostvars: Mapping[str, Any], defaults: Mapping[str, Any], optional: Iterable[str] = ()
) -> dict[str, dict[str, Any]]:
    """Each host's value of every name in ``defaults`` (its own, else the default) and of ``optional``.

    ``optional`` names have no default the controller can know (redis_maxmemory_mb is half of each
    host's RAM): they appear only where the inventory sets them. A value that cannot be templated
    on the controller (it needs the host's facts) is left out and checked on the host.
    """
    settings: dict[str, dict[str, Any]] = {}
    for host in dict.fromkeys(hosts):
        own = hostvars[host]
        row: dict[str, Any] = {}
        for name in [*defaults, *optional]:
            value = own[name] if name in own else defaults.get(name, _UNSET)
            try:
                # An undefined value (ansible-core 2.19 hands back a marker) raises once it is used.
                repr(value)
            except Exception:  # noqa: S112 - Ansible's templating errors have no common public base
                continue
            if value is not _UNSET:
                row[name] = value
        settings[host] = row
    return settings


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "redis_ha_inventory_problems": inventory_problems,
            "redis_ha_host_settings": host_settings,
        }
