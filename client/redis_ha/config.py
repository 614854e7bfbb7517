"""Settings from the environment, one URL, or keyword arguments — validated all at once.

Sources are layered: environment variables, then a URL (``REDIS_URL`` or ``url=``), then
keyword arguments; a later source overrides an earlier one field by field. Every problem
found is reported in one ``ConfigError`` naming the variable, the bad value and the
expected form. Secrets are wrapped in ``Secret`` so they never show up in reprs or logs.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from redis.credentials import UsernamePasswordCredentialProvider

from redis_ha.errors import ConfigError

logger = logging.getLogger(__name__)

Address = tuple[str, int]

DEFAULT_MASTER_NAME = "mymaster"
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_REDIS_PORT = 6379
DEFAULT_RETRY_DEADLINE_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 2.0
DEFAULT_SOCKET_TIMEOUT_S = 5.0
DEFAULT_SENTINEL_TIMEOUT_S = 0.5
DEFAULT_HEALTH_CHECK_INTERVAL_S = 10.0
DEFAULT_WATCHED_SENTINELS = 2

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_URL_SCHEMES = ("redis+sentinel", "rediss+sentinel", "redis", "rediss")


class Secret:
    """A password that prints as ``***``. Call ``reveal()`` where the real value is needed.

    Read from a file (``*_PASSWORD_FILE``), it follows that file: ``reveal()`` reads it again once
    it changed, so a password rotated by a deploy reaches the next connection without a restart.
    An unreadable or empty file keeps the last good value.
    """

    __slots__ = ("_stamp", "_value", "path")

    def __init__(self, value: str, path: Path | None = None) -> None:
        self._value = value
        self.path = path
        self._stamp = _file_stamp(path) if path else None

    def reveal(self) -> str:
        if self.path is not None:
            stamp = _file_stamp(self.path)
            if stamp is not None and stamp != self._stamp:
                try:
                    value = self.path.read_text(encoding="utf-8").strip()
                except OSError:
                    value = ""
                if value:
                    self._value, self._stamp = value, stamp
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # Settings travel to spawned worker processes by pickle.
        return (Secret, (self._value,))


@dataclass(frozen=True)
class Settings:
    """Everything redis_ha needs to reach Redis. Build it with ``load_settings()``."""

    sentinels: tuple[Address, ...] = ()
    master_name: str = DEFAULT_MASTER_NAME
    # Development only: a single Redis node without Sentinel (redis:// or rediss:// URL).
    node: Address | None = None
    username: str | None = None
    password: Secret | None = None
    sentinel_username: str | None = None
    sentinel_password: Secret | None = None
    db: int = 0
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # (announced port, port to connect to) pairs: while a cluster switches between plain text and
    # TLS, Sentinel and the nodes still name the ports of the old mode (see dial_address).
    port_map: tuple[tuple[int, int], ...] = ()
    retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S
    sentinel_timeout_s: float = DEFAULT_SENTINEL_TIMEOUT_S
    health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S
    watched_sentinels: int = DEFAULT_WATCHED_SENTINELS
    client_name: str | None = None
    # Retry commands that may have run already even when running them twice is unsafe.
    retry_unsafe_commands: bool = False
    # redis.Redis keywords passed through as given (decode_responses, protocol, ...; see
    # PASSED_REDIS_KEYWORDS). May hold credentials: not shown.
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def uses_sentinel(self) -> bool:
        return self.node is None

    def dial_address(self, addr: Address) -> Address:
        """Where to connect for a node or Sentinel that is named ``addr``: its port in the map, if any."""
        for announced, dialed in self.port_map:
            if addr[1] == announced:
                return (addr[0], dialed)
        return addr

    def describe(self) -> str:
        """One line for logs: where we connect and as whom, secrets masked."""
        where = (
            f"sentinels {format_addresses(self.sentinels)} master '{self.master_name}'"
            if self.uses_sentinel
            else f"single node {format_address(self.node)} (no Sentinel: development only)"
        )
        auth = f"user '{self.username or 'default'}'" + (" with password ***" if self.password else " without password")
        tls = "TLS on" if self.tls else "TLS off"
        if self.port_map:
            tls += " (ports " + ", ".join(f"{a}->{d}" for a, d in self.port_map) + ")"
        return f"{where}, db {self.db}, {auth}, {tls}, retry deadline {self.retry_deadline_s:g}s"


def format_address(addr: Address | None) -> str:
    if addr is None:
        return "-"
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_addresses(addrs: tuple[Address, ...] | list[Address]) -> str:
    return ",".join(format_address(a) for a in addrs)


def configured(env: Mapping[str, str] | None = None) -> bool:
    """True when the environment says where Redis is (``REDIS_SENTINELS`` or ``REDIS_URL``)."""
    env = os.environ if env is None else env
    return bool(env.get("REDIS_SENTINELS", "").strip() or env.get("REDIS_URL", "").strip())


class _Collector:
    """Gathers every problem so the user fixes them all in one go."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, problem: str | None) -> None:
        if problem is not None:
            self.problems.append(problem)


# Environment variables.

# Environment variable -> (Settings field, kind). Kinds: str, int, seconds, seconds0 (0 allowed),
# bool, file. Passwords (NAME or NAME_FILE) and the location (REDIS_SENTINELS, REDIS_URL) are
# read on their own.
_ENV_FIELDS: dict[str, tuple[str, str]] = {
    "REDIS_MASTER_NAME": ("master_name", "str"),
    "REDIS_USERNAME": ("username", "str"),
    "REDIS_SENTINEL_USERNAME": ("sentinel_username", "str"),
    "REDIS_DB": ("db", "int"),
    "REDIS_TLS": ("tls", "bool"),
    "REDIS_TLS_CA_FILE": ("tls_ca_file", "file"),
    "REDIS_TLS_CERT_FILE": ("tls_cert_file", "file"),
    "REDIS_TLS_KEY_FILE": ("tls_key_file", "file"),
    "REDIS_PORT_MAP": ("port_map", "port_map"),
    "REDIS_RETRY_DEADLINE": ("retry_deadline_s", "seconds"),
    "REDIS_CONNECT_TIMEOUT": ("connect_timeout_s", "seconds"),
    "REDIS_SOCKET_TIMEOUT": ("socket_timeout_s", "seconds"),
    "REDIS_SENTINEL_TIMEOUT": ("sentinel_timeout_s", "seconds"),
    "REDIS_HEALTH_CHECK_INTERVAL": ("health_check_interval_s", "seconds0"),  # 0 = no health checks
    "REDIS_CLIENT_NAME": ("client_name", "str"),
}
_SECRET_VARS = ("REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD")

KNOWN_ENV_VARS: frozenset[str] = frozenset(
    {
        "REDIS_SENTINELS",
        "REDIS_URL",
        *_ENV_FIELDS,
        *_SECRET_VARS,
        *(f"{name}_FILE" for name in _SECRET_VARS),
        # redis_ha.rq.defaults (not imported here: it would pull in RQ).
        "RQ_RETRY_MAX",
        "RQ_RETRY_INTERVALS",
        "RQ_JOB_TIMEOUT",
        "RQ_RESULT_TTL",
        "RQ_FAILURE_TTL",
        "RQ_DURABLE",
        "RQ_DURABLE_TIMEOUT_MS",
        "RQ_OUTBOX_PATH",
        "RQ_ENQUEUE_DEDUP_TTL",
        # The redis-ha CLI and the drills.
        "REDIS_HA_METRICS_ADDR",
        "REDIS_HA_KIT_ROOT",
    }
)
"""Every ``REDIS_*`` / ``RQ_*`` environment variable the kit reads: what a typo is compared with."""

OTHERS_ENV_VARS: frozenset[str] = frozenset(
    {
        # RQ itself: its CLI options, its key prefix, and what a worker sets for its work-horse.
        "RQ_REDIS_URL",
        "RQ_CONFIG",
        "RQ_WORKER_CLASS",
        "RQ_JOB_CLASS",
        "RQ_QUEUE_CLASS",
        "RQ_CONNECTION_CLASS",
        "RQ_KEY_PREFIX",
        "RQ_WORKER_ID",
        "RQ_JOB_ID",
        "RQ_EXECUTION_ID",
        # RQ's `rq` command without a URL (rq.cli.helpers.get_redis_from_config), and many apps.
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_SSL",
        "REDIS_SSL_CA_CERTS",
        "REDIS_SSL_CERT_REQS",
        "REDIS_SSL_CA_DATA",
        "REDIS_SSL_KEYFILE",
        "REDIS_SSL_CERTFILE",
        # Hosted Redis (Heroku) and the official Docker image.
        "REDIS_TLS_URL",
        "REDIS_VERSION",
        "REDIS_DOWNLOAD_URL",
        "REDIS_DOWNLOAD_SHA",
        # Docker links to a container named redis.
        "REDIS_NAME",
    }
)
"""``REDIS_*`` / ``RQ_*`` variables other software legitimately sets: never reported as typos."""

# Kubernetes service links (a Service named redis or redis-sentinel): REDIS_SERVICE_HOST,
# REDIS_SERVICE_PORT_<NAME>, REDIS_PORT_6379_TCP_ADDR ...; Docker links: REDIS_ENV_<NAME>.
_OTHERS_ENV_PATTERN = re.compile(
    r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)"
    r"|REDIS_ENV_[A-Z0-9_]+"
)
_ENV_PREFIXES = ("REDIS_", "RQ_")


def unknown_env_vars(names: Iterable[str]) -> list[str]:
    """One phrase per ``REDIS_*`` / ``RQ_*`` name that neither the kit nor other well-known
    software reads, naming the closest known variable. Pure; the caller logs."""
    found = []
    for name in sorted(set(names)):
        if not name.startswith(_ENV_PREFIXES) or name in KNOWN_ENV_VARS or name in OTHERS_ENV_VARS:
            continue
        if _OTHERS_ENV_PATTERN.fullmatch(name):
            continue
        close = difflib.get_close_matches(name, sorted(KNOWN_ENV_VARS), n=1)
        found.append(f"{name} (did you mean {close[0]}?)" if close else f"{name} (no known variable is close)")
    return found


_warned_env_vars: set[str] = set()
_warned_lock = threading.Lock()


def _warn_unknown_env_vars(env: Mapping[str, str]) -> None:
    """Log one warning per process for the unknown variables not warned about yet; never values.

    A forked child (an RQ work-horse) inherits what its parent already said."""
    with _warned_lock:
        fresh = [name for name in env if name not in _warned_env_vars]
        _warned_env_vars.update(fresh)
    unknown = unknown_env_vars(fresh)
    if unknown:
        logger.warning(
            "Ignoring environment variables redis_ha does not read: %s. Fix the spelling, or unset them.",
            "; ".join(unknown),
        )


# Values.


def parse_address(text: str, source: str, default_port: int | None, errors: _Collector) -> Address | None:
    """Parse ``host:port`` or ``[v6]:port``; report a problem naming ``source`` if malformed."""
    entry = text.strip()
    expected = "expected host:port, e.g. 10.0.0.5:26379"
    if not entry:
        errors.add(f"{source} has an empty entry; {expected}")
        return None
    if entry.startswith("["):
        host, sep, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            errors.add(f"{source} entry '{entry}' is not a valid [IPv6]:port; {expected}")
            return None
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    elif ":" in entry:
        errors.add(f"{source} entry '{entry}' looks like a bare IPv6 address; write it as [addr]:port")
        return None
    else:
        host, port_text = entry, ""
    if not host:
        errors.add(f"{source} entry '{entry}' has no host; {expected}")
        return None
    if not port_text:
        if default_port is None:
            errors.add(f"{source} entry '{entry}' has no port; {expected}")
            return None
        return (host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        errors.add(f"{source} entry '{entry}' has an invalid port '{port_text}'; {expected} with port 1-65535")
        return None
    return (host, int(port_text))


def parse_sentinels(text: str, source: str, errors: _Collector) -> tuple[Address, ...]:
    found: list[Address] = []
    for part in text.split(","):
        addr = parse_address(part, source, None, errors)
        if addr is None:
            continue
        if addr in found:
            errors.add(f"{source} lists {format_address(addr)} twice; list each sentinel once")
            continue
        found.append(addr)
    return tuple(found)


_PORT_MAP_EXPECTED = "expected announced=port pairs, e.g. 6379=6380,26379=26380"


def parse_port_map(given: object, source: str, errors: _Collector) -> tuple[tuple[int, int], ...] | None:
    """``6379=6380,26379=26380`` (or a dict of ints) as sorted pairs; ``None`` after reporting a problem.

    A port may be mapped once, to another port that is not mapped again: a chain or a loop would
    make where a connection goes depend on how often the address was looked up.
    """
    pairs: list[tuple[object, object]]
    if isinstance(given, str):
        pairs = [part.partition("=")[::2] for part in given.split(",")]
    elif isinstance(given, Mapping):
        pairs = list(given.items())
    else:
        errors.add(f"{source} is {type(given).__name__} {given!r}; {_PORT_MAP_EXPECTED}, or a dict of ints")
        return None
    found: dict[int, int] = {}
    for announced_given, dialed_given in pairs:
        ports = [_port(p) for p in (announced_given, dialed_given)]
        if ports[0] is None or ports[1] is None:
            errors.add(
                f"{source} has the entry '{announced_given}={dialed_given}'; {_PORT_MAP_EXPECTED} (ports 1-65535)"
            )
            return None
        announced, dialed = ports[0], ports[1]
        if announced == dialed:
            errors.add(f"{source} maps port {announced} to itself; remove that entry")
            return None
        if announced in found:
            errors.add(f"{source} maps port {announced} twice; give each port one target")
            return None
        found[announced] = dialed
    chained = sorted(set(found) & set(found.values()))
    if chained:
        errors.add(
            f"{source} maps port {chained[0]} and also maps another port to it; "
            "a port to connect to must not be mapped again"
        )
        return None
    return tuple(sorted(found.items()))


def _port(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
    if not isinstance(value, str | int):
        return None
    number = int(value)
    return number if 0 < number < 65536 else None


def _parse_bool(text: str, source: str, errors: _Collector) -> bool | None:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    errors.add(f"{source} is '{text}'; expected one of 1/true/yes/on or 0/false/no/off")
    return None


def _parse_whole(text: str, source: str, errors: _Collector, *, minimum: int) -> int | None:
    try:
        value: int | None = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        errors.add(f"{source} is '{text}'; expected a whole number of at least {minimum}")
        return None
    return value


def seconds_problem(source: str, value: object, *, zero_allowed: bool = False) -> str | None:
    """Why ``value`` (text from the environment, or a number) is not a usable number of seconds.

    ``None`` when it is one. Refuses inf, nan and overflowing numbers such as 1e999 in any
    spelling: a deadline of nan or inf would retry forever. Pure.
    """
    least = "0 or more" if zero_allowed else "greater than 0"
    expected = f"expected a finite number of seconds, {least}, e.g. 30 or 0.5"
    shown = value.strip() if isinstance(value, str) else value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return f"{source} is {type(value).__name__} {value!r}; {expected}"
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return f"{source} is '{shown}'; {expected}"
    if not math.isfinite(number):
        return f"{source} is '{shown}', which is not finite (inf and nan are refused); {expected}"
    if number < 0 or (number == 0 and not zero_allowed):
        return f"{source} is '{shown}'; {expected}"
    return None


def _parse_seconds(value: object, source: str, errors: _Collector, *, zero_allowed: bool) -> float | None:
    problem = seconds_problem(source, value, zero_allowed=zero_allowed)
    errors.add(problem)
    return None if problem else float(value)  # type: ignore[arg-type]  # checked just above


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


class SecretCredentials(UsernamePasswordCredentialProvider):
    """redis-py's credentials for each new connection, the password read afresh from its file."""

    def __init__(self, username: str | None, secret: Secret) -> None:
        super().__init__(username, secret.reveal())
        self._secret = secret

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        self.password = self._secret.reveal()
        return super().get_credentials()  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"SecretCredentials(username={self.username!r}, password={self._secret!r})"


def credentials(username: str | None, secret: Secret | None) -> dict[str, Any]:
    """redis-py keyword arguments for a user: a password file is read again for every new connection."""
    if secret is not None and secret.path is not None:
        return {"credential_provider": SecretCredentials(username, secret)}
    return {"username": username, "password": secret.reveal() if secret else None}


def _read_secret_file(path_text: str, source: str, errors: _Collector) -> Secret | None:
    path = Path(path_text)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        # A value without '/' may be the password itself, set in the _FILE variable by mistake.
        shown = f"'{path}'" if "/" in path_text else "a name without '/' (not shown: it may be the password itself)"
        errors.add(
            f"{source} points to {shown}, which cannot be read ({exc.strerror}); "
            "expected the path of a readable file holding the password"
        )
        return None
    if not value:
        errors.add(f"{source} points to '{path}', which is empty; expected the password in that file")
        return None
    try:
        if path.stat().st_mode & 0o004:
            logger.warning("Password file %s is readable by every user; chmod 0600 or 0640 it.", path)
    except OSError:
        pass
    return Secret(value, path)


def _secret(env: Mapping[str, str], name: str, errors: _Collector) -> Secret | None:
    """Read ``NAME`` or ``NAME_FILE``; both at once is ambiguous and reported."""
    direct = env.get(name)
    file_var = f"{name}_FILE"
    from_file = env.get(file_var)
    if direct and from_file:
        errors.add(f"both {name} and {file_var} are set; set only one of them")
        return None
    if from_file:
        return _read_secret_file(from_file, file_var, errors)
    return Secret(direct) if direct else None


def _from_env(env: Mapping[str, str], errors: _Collector) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if env.get("REDIS_SENTINELS", "").strip():
        if env.get("REDIS_URL", "").strip():
            errors.add("both REDIS_SENTINELS and REDIS_URL are set; use one of them")
        values["sentinels"] = parse_sentinels(env["REDIS_SENTINELS"], "REDIS_SENTINELS", errors)
    for var, (name, kind) in _ENV_FIELDS.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        if kind == "bool":
            values[name] = _parse_bool(raw, var, errors)
        elif kind == "int":
            values[name] = _parse_whole(raw, var, errors, minimum=0)
        elif kind in ("seconds", "seconds0"):
            values[name] = _parse_seconds(raw, var, errors, zero_allowed=kind == "seconds0")
        elif kind == "port_map":
            values[name] = parse_port_map(raw, var, errors)
        else:
            values[name] = raw
    for var, name in zip(_SECRET_VARS, ("password", "sentinel_password"), strict=True):
        secret = _secret(env, var, errors)
        if secret is not None:
            values[name] = secret
    return {k: v for k, v in values.items() if v is not None}


# URLs.

_URL_EXPECTED = (
    "expected redis+sentinel://[user:password@]host:port[,host:port...]/master_name[/db] "
    "or redis://[user:password@]host:port[/db]"
)
_URL_OPTIONS = ("sentinel_username", "sentinel_password", "client_name")
_SCHEME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]{0,30}")
_OPTION_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")
# A host list entry whose port, if any, is a number of at most 5 digits.
_PORT_PATTERN = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(:[0-9]{0,5})?")


@dataclass(frozen=True)
class _UrlParts:
    """A URL cut at its first ``://``, the first ``/`` or ``?`` after it, and the last ``@``
    before that. Parts are still percent-encoded."""

    scheme: str
    userinfo: str | None
    hosts: str
    path: str
    query: str | None


def _split_url(url: str) -> tuple[_UrlParts | None, str | None]:
    """The URL's parts, or a problem saying why it cannot be cut safely (quoting none of it).

    Refused, since a message quoting the host list, path or options would show a password: an
    ``@`` after the host list (a raw ``/`` or ``?`` in the password moved part of it there, or an
    option value holds a raw ``@``), and a port that is not a number in a URL without ``@`` (the
    password of ``redis://app:password`` written without its ``@host``).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME_PATTERN.fullmatch(scheme):
        return None, (
            "does not start with redis+sentinel://, rediss+sentinel://, redis:// or rediss:// "
            f"(the value is not shown: it may hold a password); {_URL_EXPECTED}"
        )
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, after = rest[:cut], rest[cut:]
    userinfo, at, hosts = authority.rpartition("@")
    path, question, query = after.partition("?")
    if "@" in after:
        return None, (
            "has an '@' after its host list (the value is not shown: it may hold a password); "
            "percent-encode / ? @ in a password or option value as %2F %3F %40"
        )
    if not at and not all(_PORT_PATTERN.fullmatch(entry.strip()) for entry in hosts.split(",")):
        return None, (
            "has no '@' and a host whose port is not a number (the value is not shown: without "
            f"'@host' the password is where the port goes); {_URL_EXPECTED}"
        )
    return _UrlParts(scheme, userinfo if at else None, hosts, path, query if question else None), None


def mask_url(url: str) -> str:
    """The URL as a message may show it: user, password, every option value and every unknown
    option replaced by ``***`` (a raw ``&`` in a password makes its tail look like an option),
    nothing at all when it cannot be cut safely. Pure."""
    parts, _ = _split_url(url)
    if parts is None:
        return "(not shown)"
    userinfo = "***@" if parts.userinfo is not None else ""
    keys = (item.partition("=")[0] for item in (parts.query or "").split("&") if item)
    options = "&".join(f"{key}=***" if key in _URL_OPTIONS else "***" for key in keys)
    query = "" if parts.query is None else f"?{options}"
    return f"{parts.scheme}://{userinfo}{parts.hosts}{parts.path}{query}"


def _from_url(url: str, source: str, errors: _Collector) -> dict[str, Any]:
    """Parse redis+sentinel://user:pass@h1:26379,h2:26379/mymaster/0 or redis[s]://host:port/db.

    No message quotes the user, the password or an option's value."""
    parts, problem = _split_url(url)
    if parts is None:
        errors.add(f"{source} {problem}")
        return {}
    shown = mask_url(url)
    if parts.scheme not in _URL_SCHEMES:
        errors.add(f"{source} '{shown}' has an unknown scheme '{parts.scheme}'; {_URL_EXPECTED}")
        return {}
    values: dict[str, Any] = {"tls": parts.scheme.startswith("rediss")}
    if parts.userinfo is not None:
        user, colon, password = parts.userinfo.partition(":")
        if user:
            values["username"] = unquote(user)
        if colon:
            values["password"] = Secret(unquote(password))
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme.endswith("+sentinel"):
        values["sentinels"] = parse_sentinels(parts.hosts, f"{source} host list", errors)
        if not segments:
            errors.add(f"{source} '{shown}' names no master; {_URL_EXPECTED}")
        else:
            values["master_name"] = unquote(segments[0])
        db_segments = segments[1:]
    else:
        node = parse_address(parts.hosts, f"{source} host", DEFAULT_REDIS_PORT, errors)
        if node is not None:
            values["node"] = node
        values["sentinels"] = ()
        db_segments = segments
    if len(db_segments) > 1:
        errors.add(f"{source} '{shown}' has extra path segments; {_URL_EXPECTED}")
    elif db_segments:
        values["db"] = _parse_whole(db_segments[0], f"{source} database", errors, minimum=0)
    for item in filter(None, (parts.query or "").split("&")):
        key, eq, value = item.partition("=")
        known = f"known: {', '.join(_URL_OPTIONS)}; percent-encode & = in a value as %26 %3D"
        if key in _URL_OPTIONS and eq:
            values[key] = Secret(unquote(value)) if key == "sentinel_password" else unquote(value)
            continue
        # Quoted only when it is a near miss of a known option: otherwise it may be a piece of a
        # password holding a raw '&'.
        close = difflib.get_close_matches(key, _URL_OPTIONS, n=1) if _OPTION_PATTERN.fullmatch(key) else []
        if close:
            errors.add(f"{source} '{shown}' has an unknown option '{key}' (did you mean {close[0]}?); {known}")
        elif eq:
            errors.add(f"{source} '{shown}' has an unknown option (name not shown); {known}")
        else:
            errors.add(f"{source} '{shown}' has an option that is not name=value (not shown); {known}")
    return {k: v for k, v in values.items() if v is not None}


# Keyword arguments.

_FIELD_NAMES = {f.name for f in dataclasses.fields(Settings)}

# Every keyword of redis.Redis() is one of: a Settings field of the same name (db, username,
# password, client_name), an alias of one, passed through, or refused with the reason.
ALIASED_REDIS_KEYWORDS: Mapping[str, str] = {
    "socket_timeout": "socket_timeout_s",
    "socket_connect_timeout": "connect_timeout_s",
    "health_check_interval": "health_check_interval_s",
    "ssl": "tls",
    "ssl_ca_certs": "tls_ca_file",
    "ssl_certfile": "tls_cert_file",
    "ssl_keyfile": "tls_key_file",
}
"""redis.Redis keyword -> the Settings field that means the same (redis_ha's name, with its unit)."""

PASSED_REDIS_KEYWORDS: frozenset[str] = frozenset(
    {
        "decode_responses",
        "encoding",
        "encoding_errors",
        "protocol",
        "legacy_responses",
        "lib_name",
        "lib_version",
        "driver_info",
        "socket_read_size",
        "socket_keepalive",
        "socket_keepalive_options",
        "max_connections",
        "credential_provider",
        "maint_notifications_config",
        "single_connection_client",  # the client's, not the pool's
        "event_dispatcher",  # the client's
        "ssl_cert_reqs",
        "ssl_include_verify_flags",
        "ssl_exclude_verify_flags",
        "ssl_ca_path",
        "ssl_ca_data",
        "ssl_check_hostname",
        "ssl_password",
        "ssl_validate_ocsp",
        "ssl_validate_ocsp_stapled",
        "ssl_ocsp_context",
        "ssl_ocsp_expected_cert",
        "ssl_min_version",
        "ssl_ciphers",
    }
)
"""redis.Redis keywords handed as given to redis_ha's pool and its connections (or the client)."""

_WHERE = "redis_ha asks Sentinel where the master is: set REDIS_SENTINELS (or url='redis://host:port' for one node)"
_RETRY = (
    "redis_ha's retry loop is the only one, as it alone knows which commands may run twice after a failover: "
    "set retry_deadline_s (and retry_unsafe_commands)"
)
_CACHE = "client-side caching wraps each connection in a proxy that Sentinel failover handling cannot follow"
REFUSED_REDIS_KEYWORDS: Mapping[str, str] = {
    "host": _WHERE,
    "port": _WHERE,
    "unix_socket_path": "a Unix socket reaches one local server, never the master Sentinel names: set REDIS_SENTINELS",
    "connection_pool": (
        "redis_ha builds its own Sentinel-aware pool; to share one, use HARedis(connection_pool=client.connection_pool)"
    ),
    "retry": _RETRY,
    "retry_on_timeout": _RETRY,
    "retry_on_error": _RETRY,
    "redis_connect_func": "redis_ha runs its own connect step (every new connection confirms the master's ROLE)",
    "cache": _CACHE,
    "cache_config": _CACHE,
    "oss_cluster_maint_notifications_handler": "it is for Redis Cluster, which Sentinel does not manage",
}
"""redis.Redis keywords that cannot work with Sentinel, each with why."""
_SECONDS_FIELDS = {name: kind == "seconds0" for name, kind in _ENV_FIELDS.values() if kind.startswith("seconds")}
_TEXT_FIELDS = {name for name, kind in _ENV_FIELDS.values() if kind in ("str", "file")}


def _from_overrides(overrides: Mapping[str, Any], errors: _Collector) -> dict[str, Any]:
    """Keyword arguments checked like the variables they stand for; a secret's value is never shown."""
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for given_key, given in overrides.items():
        source = f"keyword argument {given_key}"
        value = given
        if given_key in REFUSED_REDIS_KEYWORDS:
            errors.add(f"{source} cannot be used with Sentinel: {REFUSED_REDIS_KEYWORDS[given_key]}")
            continue
        if given_key in PASSED_REDIS_KEYWORDS:
            errors.add(_passthrough_problem(given_key, given))
            extra[given_key] = given
            continue
        key = ALIASED_REDIS_KEYWORDS.get(given_key, given_key)
        if key not in _FIELD_NAMES or key == "extra":
            known = sorted((_FIELD_NAMES - {"extra"}) | set(ALIASED_REDIS_KEYWORDS) | PASSED_REDIS_KEYWORDS)
            errors.add(f"unknown setting '{given_key}'; known settings: {', '.join(known)}")
            continue
        if given is None:
            continue
        if key in ("password", "sentinel_password"):
            if isinstance(given, str):
                value = Secret(given)
            elif not isinstance(given, Secret):
                errors.add(f"{source} is a {type(given).__name__}; expected a str or a redis_ha Secret")
                continue
        elif key == "sentinels" and isinstance(given, str):
            value = parse_sentinels(given, "sentinels", errors)
        elif key == "port_map":
            value = parse_port_map(given, source, errors)
        elif key in _SECONDS_FIELDS:
            value = _parse_seconds(given, source, errors, zero_allowed=_SECONDS_FIELDS[key])
        elif key in ("db", "watched_sentinels"):
            minimum = 0 if key == "db" else 1
            if isinstance(given, bool) or not isinstance(given, int) or given < minimum:
                errors.add(f"{source} is {given!r}; expected a whole number of at least {minimum}")
                continue
        elif key in ("tls", "retry_unsafe_commands") and not isinstance(given, bool):
            errors.add(f"{source} is {given!r}; expected True or False")
            continue
        elif key in _TEXT_FIELDS and not isinstance(given, str):
            errors.add(f"{source} is {given!r}; expected a str")
            continue
        if value is not None:
            values[key] = value
    if extra:
        values["extra"] = extra
    return values


def _passthrough_problem(key: str, value: Any) -> str | None:
    """Why a passed-through redis.Redis keyword cannot work, for the few whose values are checked here."""
    source = f"keyword argument {key}"
    if key == "protocol" and value not in (None, 2, 3, "2", "3"):
        return f"{source} is {value!r}; expected 2 (RESP2) or 3 (RESP3)"
    if key in ("decode_responses", "single_connection_client") and not isinstance(value, bool):
        return f"{source} is {value!r}; expected True or False"
    return None


def load_settings(
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build validated ``Settings``: environment, then URL, then keyword overrides.

    Raises ``ConfigError`` listing every problem. Password overrides may be plain strings.
    Unknown ``REDIS_*`` / ``RQ_*`` variables get one warning per process (see ``unknown_env_vars``).
    """
    env = os.environ if env is None else env
    _warn_unknown_env_vars(env)
    errors = _Collector()
    values = _from_env(env, errors)
    env_url = env.get("REDIS_URL", "").strip()
    if url:
        values.update(_from_url(url, "url", errors))
    elif env_url:
        values.update(_from_url(env_url, "REDIS_URL", errors))
    values.update(_from_overrides(overrides, errors))
    settings = Settings(**{k: v for k, v in values.items() if k in _FIELD_NAMES})
    _check(settings, errors, url_given=bool(url or env_url))
    if errors.problems:
        raise ConfigError(errors.problems)
    return settings


def with_overrides(settings: Settings, **overrides: Any) -> Settings:
    """``settings`` with keyword overrides applied, checked as ``load_settings`` checks them."""
    errors = _Collector()
    values = _from_overrides(overrides, errors)
    if "extra" in values:
        values["extra"] = {**settings.extra, **values["extra"]}
    merged = dataclasses.replace(settings, **values)
    _check(merged, errors, url_given=True)
    if errors.problems:
        raise ConfigError(errors.problems)
    return merged


def _check(s: Settings, errors: _Collector, *, url_given: bool) -> None:
    """Cross-field checks that only make sense on the merged result.

    A user name without a password is fine: a Redis user with ``nopass`` (redis-py then sends
    ``AUTH user ""``, which such a user accepts)."""
    if not s.sentinels and s.node is None and not url_given:  # a bad URL has said why already
        errors.add(
            "no Redis location configured; set REDIS_SENTINELS=host:port,host:port,... "
            "(and REDIS_MASTER_NAME) or REDIS_URL"
        )
    if s.sentinels and s.node is not None:
        errors.add("both sentinels and a single node are configured; use one of them")
    if not s.master_name.strip():
        errors.add("REDIS_MASTER_NAME is empty; expected the name Sentinel monitors, e.g. mymaster")
    tls_files = (
        ("REDIS_TLS_CA_FILE", s.tls_ca_file),
        ("REDIS_TLS_CERT_FILE", s.tls_cert_file),
        ("REDIS_TLS_KEY_FILE", s.tls_key_file),
    )
    for var, path in tls_files:
        if path and not s.tls:
            errors.add(f"{var} is set but TLS is off; set REDIS_TLS=1 or remove {var}")
        elif path and not Path(path).is_file():
            errors.add(f"{var} is '{path}', which is not a readable file")
    for key in sorted(k for k in s.extra if k.startswith("ssl_")):
        if not s.tls:
            errors.add(f"keyword argument {key} is set but TLS is off; set tls=True (REDIS_TLS=1) or remove {key}")
    if s.port_map and not s.sentinels:
        errors.add("REDIS_PORT_MAP is set without REDIS_SENTINELS; it maps the ports Sentinel names, so remove it")
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        errors.add("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE must be set together (client certificate)")
