"""Settings from the environment, one URL, or keyword arguments — validated all at once.

Sources are layered: environment variables, then a URL (``REDIS_URL`` or ``url=``), then
keyword arguments; a later source overrides an earlier one field by field. Every problem
found is reported in one ``ConfigError`` naming the variable, the bad value and the
expected form. Secrets are wrapped in ``Secret`` so they never show up in reprs or logs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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
    """A password that prints as ``***``. Call ``reveal()`` where the real value is needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
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
    retry_deadline_s: float = DEFAULT_RETRY_DEADLINE_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    socket_timeout_s: float = DEFAULT_SOCKET_TIMEOUT_S
    sentinel_timeout_s: float = DEFAULT_SENTINEL_TIMEOUT_S
    health_check_interval_s: float = DEFAULT_HEALTH_CHECK_INTERVAL_S
    watched_sentinels: int = DEFAULT_WATCHED_SENTINELS
    client_name: str | None = None
    # Retry commands that may have run already even when running them twice is unsafe.
    retry_unsafe_commands: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_sentinel(self) -> bool:
        return self.node is None

    def describe(self) -> str:
        """One line for logs: where we connect and as whom, secrets masked."""
        where = (
            f"sentinels {format_addresses(self.sentinels)} master '{self.master_name}'"
            if self.uses_sentinel
            else f"single node {format_address(self.node)} (no Sentinel: development only)"
        )
        auth = f"user '{self.username or 'default'}'" + (" with password ***" if self.password else " without password")
        tls = "TLS on" if self.tls else "TLS off"
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

    def add(self, problem: str) -> None:
        self.problems.append(problem)


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


def _parse_bool(text: str, source: str, errors: _Collector) -> bool | None:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    errors.add(f"{source} is '{text}'; expected one of 1/true/yes/on or 0/false/no/off")
    return None


def _parse_number(text: str, source: str, errors: _Collector, *, integer: bool, minimum: float) -> Any:
    try:
        value: float = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number of seconds"
        errors.add(f"{source} is '{text}'; expected {kind}")
        return None
    if value < minimum:
        errors.add(f"{source} is '{text}'; expected a value of at least {minimum:g}")
        return None
    return value


def _read_secret_file(path_text: str, source: str, errors: _Collector) -> Secret | None:
    path = Path(path_text)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        errors.add(
            f"{source} points to '{path}', which cannot be read ({exc.strerror}); "
            "expected a readable file holding the password"
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
    return Secret(value)


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


# Environment variable -> (Settings field, kind). Kinds: str, int, float, bool, file.
_ENV_FIELDS: dict[str, tuple[str, str]] = {
    "REDIS_MASTER_NAME": ("master_name", "str"),
    "REDIS_USERNAME": ("username", "str"),
    "REDIS_SENTINEL_USERNAME": ("sentinel_username", "str"),
    "REDIS_DB": ("db", "int"),
    "REDIS_TLS": ("tls", "bool"),
    "REDIS_TLS_CA_FILE": ("tls_ca_file", "file"),
    "REDIS_TLS_CERT_FILE": ("tls_cert_file", "file"),
    "REDIS_TLS_KEY_FILE": ("tls_key_file", "file"),
    "REDIS_RETRY_DEADLINE": ("retry_deadline_s", "float"),
    "REDIS_CONNECT_TIMEOUT": ("connect_timeout_s", "float"),
    "REDIS_SOCKET_TIMEOUT": ("socket_timeout_s", "float"),
    "REDIS_SENTINEL_TIMEOUT": ("sentinel_timeout_s", "float"),
    "REDIS_HEALTH_CHECK_INTERVAL": ("health_check_interval_s", "float"),
    "REDIS_CLIENT_NAME": ("client_name", "str"),
}


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
        elif kind in ("int", "float"):
            values[name] = _parse_number(raw, var, errors, integer=kind == "int", minimum=0)
        else:
            values[name] = raw
    for var, name in (("REDIS_PASSWORD", "password"), ("REDIS_SENTINEL_PASSWORD", "sentinel_password")):
        secret = _secret(env, var, errors)
        if secret is not None:
            values[name] = secret
    return {k: v for k, v in values.items() if v is not None}


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def _from_url(url: str, source: str, errors: _Collector) -> dict[str, Any]:
    """Parse redis+sentinel://user:pass@h1:26379,h2:26379/mymaster/0 or redis[s]://host:port/db."""
    shown = _redact_url(url)
    expected = (
        "expected redis+sentinel://[user:password@]host:port[,host:port...]/master_name[/db] "
        "or redis://[user:password@]host:port[/db]"
    )
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in _URL_SCHEMES:
        errors.add(f"{source} '{shown}' has an unknown scheme '{scheme}'; {expected}")
        return {}
    values: dict[str, Any] = {"tls": scheme.startswith("rediss")}
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            values["username"] = unquote(user)
        if colon:
            values["password"] = Secret(unquote(password))
    segments = [s for s in path.split("/") if s]
    if scheme.endswith("+sentinel"):
        values["sentinels"] = parse_sentinels(hosts, f"{source} host list", errors)
        if not segments:
            errors.add(f"{source} '{shown}' names no master; {expected}")
        else:
            values["master_name"] = unquote(segments[0])
        db_segments = segments[1:]
    else:
        node = parse_address(hosts, f"{source} host", DEFAULT_REDIS_PORT, errors)
        if node is not None:
            values["node"] = node
        values["sentinels"] = ()
        db_segments = segments
    if len(db_segments) > 1:
        errors.add(f"{source} '{shown}' has extra path segments; {expected}")
    elif db_segments:
        values["db"] = _parse_number(db_segments[0], f"{source} database", errors, integer=True, minimum=0)
    for key, items in parse_qs(query).items():
        if key == "sentinel_password":
            values["sentinel_password"] = Secret(items[-1])
        elif key == "sentinel_username":
            values["sentinel_username"] = items[-1]
        elif key == "client_name":
            values["client_name"] = items[-1]
        else:
            errors.add(
                f"{source} '{shown}' has an unknown option '{key}'; "
                "known: sentinel_username, sentinel_password, client_name"
            )
    return {k: v for k, v in values.items() if v is not None}


_FIELD_NAMES = {f.name for f in dataclasses.fields(Settings)}


def load_settings(
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build validated ``Settings``: environment, then URL, then keyword overrides.

    Raises ``ConfigError`` listing every problem. Password overrides may be plain strings.
    """
    env = os.environ if env is None else env
    errors = _Collector()
    values = _from_env(env, errors)
    if url:
        values.update(_from_url(url, "url", errors))
    elif env.get("REDIS_URL", "").strip():
        values.update(_from_url(env["REDIS_URL"].strip(), "REDIS_URL", errors))
    for key, given in overrides.items():
        if key not in _FIELD_NAMES:
            errors.add(f"unknown setting '{key}'; known settings: {', '.join(sorted(_FIELD_NAMES))}")
            continue
        value = given
        if key in ("password", "sentinel_password") and isinstance(given, str):
            value = Secret(given)
        if key == "sentinels" and isinstance(given, str):
            value = parse_sentinels(given, "sentinels", errors)
        if value is not None:
            values[key] = value
    settings = Settings(**{k: v for k, v in values.items() if k in _FIELD_NAMES})
    _check(settings, errors)
    if errors.problems:
        raise ConfigError(errors.problems)
    return settings


def _check(s: Settings, errors: _Collector) -> None:
    """Cross-field checks that only make sense on the merged result.

    A user name without a password is fine: a Redis user with ``nopass`` (redis-py then sends
    ``AUTH user ""``, which such a user accepts)."""
    if not s.sentinels and s.node is None:
        errors.add(
            "no Redis location configured; set REDIS_SENTINELS=host:port,host:port,... "
            "(and REDIS_MASTER_NAME) or REDIS_URL"
        )
    if s.sentinels and s.node is not None:
        errors.add("both sentinels and a single node are configured; use one of them")
    if not s.master_name.strip():
        errors.add("REDIS_MASTER_NAME is empty; expected the name Sentinel monitors, e.g. mymaster")
    if s.db < 0:
        errors.add(f"REDIS_DB is {s.db}; expected a database number of 0 or more")
    for var, value in (
        ("REDIS_RETRY_DEADLINE", s.retry_deadline_s),
        ("REDIS_CONNECT_TIMEOUT", s.connect_timeout_s),
        ("REDIS_SOCKET_TIMEOUT", s.socket_timeout_s),
        ("REDIS_SENTINEL_TIMEOUT", s.sentinel_timeout_s),
    ):
        if value <= 0:
            errors.add(f"{var} is {value:g}; expected a positive number of seconds")
    if s.watched_sentinels < 1:
        errors.add(f"watched_sentinels is {s.watched_sentinels}; expected at least 1")
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
    if bool(s.tls_cert_file) != bool(s.tls_key_file):
        errors.add("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE must be set together (client certificate)")
