"""Configuration: every bad value named with its variable and the expected form; secrets never shown."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis_ha
import redis_ha.client as client_module
import redis_ha.config as config_module
from redis.connection import SSLConnection
from redis_ha.config import KNOWN_ENV_VARS, OTHERS_ENV_VARS, Secret, load_settings, unknown_env_vars
from redis_ha.pool import HAConnectionPool
from redis_ha.sentinel import probe_client

from tests.support.cluster import LoopbackCluster

CLIENT_SOURCE = Path(__file__).resolve().parents[2] / "client" / "redis_ha"


def test_sentinels_and_credentials_come_from_the_environment() -> None:
    s = load_settings(
        env={
            "REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380,[fd00::3]:26379",
            "REDIS_MASTER_NAME": "jobs",
            "REDIS_USERNAME": "app",
            "REDIS_PASSWORD": "s3cret-value",
            "REDIS_DB": "2",
        }
    )
    assert s.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("fd00::3", 26379))
    assert s.master_name == "jobs"
    assert s.username == "app"
    assert s.password == Secret("s3cret-value")
    assert s.db == 2


def test_password_file_is_read_and_its_content_never_printed(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-a-file\n")
    secret_file.chmod(0o600)
    s = load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_PASSWORD_FILE": str(secret_file)})
    assert s.password is not None and s.password.reveal() == "from-a-file"
    assert "from-a-file" not in repr(s)
    assert "from-a-file" not in s.describe()
    assert "from-a-file" not in repr(redis_ha.connect(settings=s))


def test_sentinel_entry_without_port_names_the_variable_and_the_expected_form() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h1"})
    assert "REDIS_SENTINELS entry 'h1' has no port; expected host:port" in str(info.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(
            env={
                "REDIS_SENTINELS": "h1:26379,h2:notaport,,h1:26379",
                "REDIS_DB": "one",
                "REDIS_TLS": "maybe",
                "REDIS_RETRY_DEADLINE": "-3",
                "REDIS_SOCKET_TIMEOUT": "nan",
            }
        )
    problems = info.value.problems
    text = str(info.value)
    assert "invalid port 'notaport'" in text
    assert "empty entry" in text
    assert "lists h1:26379 twice" in text
    assert "REDIS_DB is 'one'; expected a whole number" in text
    assert "REDIS_TLS is 'maybe'" in text
    assert "REDIS_RETRY_DEADLINE is '-3'" in text
    assert "REDIS_SOCKET_TIMEOUT is 'nan', which is not finite" in text
    assert len(problems) == 7


def test_password_and_password_file_together_are_ambiguous(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("x")
    with pytest.raises(redis_ha.ConfigError, match="both REDIS_PASSWORD and REDIS_PASSWORD_FILE are set"):
        load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_PASSWORD": "y", "REDIS_PASSWORD_FILE": str(f)})


def test_unreadable_password_file_names_the_path_not_a_secret(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(redis_ha.ConfigError, match=f"REDIS_PASSWORD_FILE points to '{missing}', which cannot be read"):
        load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_PASSWORD_FILE": str(missing)})


def test_a_password_set_in_the_file_variable_by_mistake_is_not_shown() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_PASSWORD_FILE": "Kx7Qe-Vm3Tz"})
    assert info.value.problems == [
        "REDIS_SENTINEL_PASSWORD_FILE points to a name without '/' (not shown: it may be the password itself), "
        "which cannot be read (No such file or directory); expected the path of a readable file holding the password"
    ]


def test_sentinel_url_carries_hosts_master_db_and_credentials() -> None:
    s = load_settings("redis+sentinel://app:p%40ss@h1:26379,h2:26379/mymaster/3", env={})
    assert s.sentinels == (("h1", 26379), ("h2", 26379))
    assert (s.master_name, s.db, s.username) == ("mymaster", 3, "app")
    assert s.password == Secret("p@ss")
    assert not s.tls


def test_plain_url_is_a_single_development_node() -> None:
    s = load_settings(env={"REDIS_URL": "rediss://localhost/1"})
    assert s.node == ("localhost", 6379)
    assert s.sentinels == ()
    assert s.tls and s.db == 1


def test_malformed_url_error_hides_the_password() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings("redis+sentinel://app:topsecret@h1/", env={})
    text = str(info.value)
    assert "topsecret" not in text
    assert "'redis+sentinel://***@h1/' names no master" in text
    assert "has no port" in text and "names no master" in text


def test_keyword_arguments_override_the_environment() -> None:
    s = load_settings(env={"REDIS_SENTINELS": "h1:1", "REDIS_DB": "4"}, db=5, password="kw", retry_deadline_s=3)
    assert s.db == 5
    assert s.password == Secret("kw")
    assert s.retry_deadline_s == 3


def test_unknown_keyword_is_reported() -> None:
    with pytest.raises(redis_ha.ConfigError, match="unknown setting 'pasword'"):
        load_settings(env={"REDIS_SENTINELS": "h1:1"}, pasword="x")


def test_tls_files_require_tls_and_must_exist(tmp_path: Path) -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h1:1", "REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem")})
    assert "REDIS_TLS_CA_FILE is set but TLS is off" in str(info.value)
    with pytest.raises(redis_ha.ConfigError, match="is not a readable file"):
        load_settings(env={"REDIS_SENTINELS": "h1:1", "REDIS_TLS": "1", "REDIS_TLS_CA_FILE": str(tmp_path / "ca")})


def test_nothing_configured_is_reported_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(redis_ha.ConfigError, match="no Redis location configured"):
        load_settings(env={})
    client_module._warned_unconfigured_pid = 0
    with caplog.at_level("WARNING"):
        assert redis_ha.configured(env={}) is False
        assert redis_ha.configured(env={}) is False
    warnings = [r for r in caplog.records if "not configured" in r.getMessage()]
    assert len(warnings) == 1
    assert redis_ha.configured(env={"REDIS_SENTINELS": "h:1"}) is True


def test_connect_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "10.9.9.9:26379")
    monkeypatch.setenv("REDIS_MASTER_NAME", "envmaster")
    client = redis_ha.connect()
    assert client.settings.master_name == "envmaster"
    assert os.environ["REDIS_SENTINELS"] == "10.9.9.9:26379"


def test_tls_settings_build_tls_connections_for_the_pool_and_the_probes(tmp_path: Path) -> None:
    """REDIS_TLS=1 gives SSL connections with the CA and client certificate, in the master pool
    (and so in RQ's clones of it) as in the short-lived Sentinel and node probes."""
    for name in ("ca.crt", "client.crt", "client.key"):
        (tmp_path / name).write_text("not read before connecting\n")
    s = load_settings(
        env={
            "REDIS_SENTINELS": "10.0.0.1:26379",
            "REDIS_TLS": "1",
            "REDIS_TLS_CA_FILE": str(tmp_path / "ca.crt"),
            "REDIS_TLS_CERT_FILE": str(tmp_path / "client.crt"),
            "REDIS_TLS_KEY_FILE": str(tmp_path / "client.key"),
        }
    )
    connection = HAConnectionPool(s).make_connection()
    assert isinstance(connection, SSLConnection)
    assert (connection.ca_certs, connection.certfile, connection.keyfile) == (
        str(tmp_path / "ca.crt"),
        str(tmp_path / "client.crt"),
        str(tmp_path / "client.key"),
    )
    probe = probe_client(s, ("10.0.0.1", 26379), sentinel=True)
    assert issubclass(probe.connection_pool.connection_class, SSLConnection)
    assert probe.connection_pool.connection_kwargs["ssl_ca_certs"] == str(tmp_path / "ca.crt")


def test_a_port_map_sends_every_connection_to_the_mapped_port_and_keeps_the_others() -> None:
    """REDIS_PORT_MAP: the pool's connections, the kwargs RQ copies and the probes all dial the
    mapped port of an announced address; a port the map does not name is dialed as given."""
    s = load_settings(env={"REDIS_SENTINELS": "10.0.0.1:26379", "REDIS_PORT_MAP": " 6379=6380 , 26379=26380"})
    assert s.port_map == ((6379, 6380), (26379, 26380))
    assert "(ports 6379->6380, 26379->26380)" in s.describe()
    assert s.dial_address(("10.0.0.2", 6379)) == ("10.0.0.2", 6380)
    assert s.dial_address(("10.0.0.2", 6390)) == ("10.0.0.2", 6390)
    probe = probe_client(s, ("10.0.0.1", 26379), sentinel=True)
    assert probe.connection_pool.connection_kwargs["port"] == 26380
    pool = HAConnectionPool(s)
    pool.last_address = ("10.0.0.2", 6379)
    assert pool.last_address == ("10.0.0.2", 6380)
    pool.last_address = pool.last_address  # what an RQ clone of the pool does: no second mapping
    assert pool.last_address == ("10.0.0.2", 6380)
    assert load_settings(sentinels="h:1", port_map={6379: 6380}).port_map == ((6379, 6380),)


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("6379", "REDIS_PORT_MAP has the entry '6379='; expected announced=port pairs"),
        ("6379=0", "has the entry '6379=0'"),
        ("6379=x", "has the entry '6379=x'"),
        ("6379=6379", "maps port 6379 to itself"),
        ("6379=6380,6379=6381", "maps port 6379 twice"),
        ("6379=6380,6380=6381", "maps port 6380 and also maps another port to it"),
    ],
)
def test_a_bad_port_map_is_refused_with_what_to_fix(given: str, problem: str) -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h1:1", "REDIS_PORT_MAP": given})
    assert problem in str(info.value)


def test_a_port_map_needs_sentinels_and_a_keyword_map_of_ints() -> None:
    with pytest.raises(redis_ha.ConfigError, match="REDIS_PORT_MAP is set without REDIS_SENTINELS"):
        load_settings(url="redis://h:6379/0", port_map="6379=6380")
    with pytest.raises(redis_ha.ConfigError, match="keyword argument port_map is list"):
        load_settings(sentinels="h:1", port_map=[6379, 6380])
    with pytest.raises(redis_ha.ConfigError, match="has the entry 'True=6380'"):
        load_settings(sentinels="h:1", port_map={True: 6380})


# Passwords never shown, whatever the URL looks like.

PASSWORD_HEAD, PASSWORD_TAIL = "Kx7Qe", "Vm3Tz"
"""Two distinctive halves: neither may show up, so a password cut in two by a raw separator
cannot leak half of itself either."""
PASSWORD_SEPARATORS = ["", "#", "/", "?", "@", ":", "%", "&", "=", "/?#@"]
MALFORMED_URLS = [
    "redis:app:{pw}@h:6379",  # ':' instead of '://'
    "redis:/app:{pw}@h:6379/0",
    "redis//app:{pw}@h:6379/0",
    "rediss+foo://app:{pw}@h/mymaster",  # unknown scheme
    "REDIS://app:{pw}@h:6379/0",
    "redis+sentinel://app:{pw}@h1:26379/mymaster",  # well-formed when the password is encoded
    "redis+sentinel://app:{pw}@h1/mymaster",  # no port
    "redis+sentinel://app:{pw}@h1:notaport/mymaster",
    "redis+sentinel://app:{pw}@h1:26379,h1:26379/mymaster",  # the same sentinel twice
    "redis+sentinel://app:{pw}@/mymaster",  # no host
    "redis+sentinel://app:{pw}@h1:26379",  # no master
    "redis+sentinel://app:{pw}@h1:26379/mymaster/x",  # bad database
    "redis+sentinel://app:{pw}@h1:26379/mymaster/0/extra",
    "redis+sentinel://app:{pw}@h1:26379/mymaster?bogus=1",
    "redis+sentinel://app:{pw}@h1:26379/mymaster?client_name",
    "redis+sentinel://h1:26379/mymaster?sentinel_password={pw}&bogus=1",
    "redis+sentinel://h1/mymaster?sentinel_pasword={pw}",
    "redis://:{pw}@h:99999/0",
    "redis://app:{pw}@[::1/0",
    "redis://app:{pw}@h:6379/0/1",
    "  redis://app:{pw}@h/0",
]
FORGOTTEN_HOST_URLS = [
    "redis://app:{pw}",  # '@host' forgotten: the password is where the port goes
    "redis://app:{pw}/0",
    "redis+sentinel://app:{pw}/mymaster",
    "redis+sentinel://h1:26379,app:{pw}/mymaster",
]
"""With a raw '@' in such a password, the URL is a well-formed one naming its tail as the host:
no parser can tell, so these are tested with the other separators only."""
CASES = [(url, sep) for url in MALFORMED_URLS for sep in PASSWORD_SEPARATORS] + [
    (url, sep) for url in FORGOTTEN_HOST_URLS for sep in PASSWORD_SEPARATORS if "@" not in sep
]


def _leaks(text: str, password: str) -> list[str]:
    return [piece for piece in (PASSWORD_HEAD, PASSWORD_TAIL, password, quote(password, safe="")) if piece in text]


@pytest.mark.parametrize(("template", "separator"), CASES)
def test_no_error_repr_or_log_shows_the_password_whatever_the_url_looks_like(
    template: str, separator: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = f"{PASSWORD_HEAD}{separator}{PASSWORD_TAIL}"
    for written in (password, quote(password, safe="")):
        url = template.format(pw=written)
        for how, url_argument, env in ((f"url={url!r}", url, {}), (f"REDIS_URL={url!r}", None, {"REDIS_URL": url})):
            shown: list[str] = []
            with caplog.at_level(logging.DEBUG):
                try:
                    settings = load_settings(url_argument, env=env)
                except redis_ha.ConfigError as error:
                    shown += [str(error), repr(error), *error.problems]
                else:
                    shown += [
                        repr(settings),
                        str(settings),
                        settings.describe(),
                        repr(redis_ha.connect(settings=settings)),
                    ]
            shown.append(caplog.text)
            caplog.clear()
            leaked = _leaks("\n".join(shown), password)
            assert not leaked, f"{how} shows {leaked}: {shown}"


def test_a_raw_slash_or_question_mark_in_the_password_is_refused_with_the_fix_and_nothing_of_the_url() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_URL": "redis+sentinel://app:Kx7/Qe@h1:26379/mymaster"})
    assert info.value.problems == [
        "REDIS_URL has an '@' after its host list (the value is not shown: it may hold a password); "
        "percent-encode / ? @ in a password or option value as %2F %3F %40"
    ]


def test_a_url_without_its_scheme_separator_is_refused_without_being_shown() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_URL": "redis:app:Kx7Qe@h:6379"})
    (problem,) = info.value.problems
    assert problem.startswith("REDIS_URL does not start with redis+sentinel://, rediss+sentinel://, redis://")
    assert "not shown" in problem and "Kx7Qe" not in problem


def test_a_raw_hash_in_the_password_is_part_of_the_password() -> None:
    s = load_settings("redis+sentinel://app:Kx7#Qe@h1:26379/mymaster", env={})
    assert s.password == Secret("Kx7#Qe")
    assert s.sentinels == (("h1", 26379),)


def test_option_values_are_masked_and_only_a_near_miss_of_a_known_option_is_named() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(
            "redis+sentinel://h1:26379/mymaster?sentinel_password=Kx7Qe&client_name=web&sentinel_usrname=s&Vm3Tz=1",
            env={},
        )
    shown = "'redis+sentinel://h1:26379/mymaster?sentinel_password=***&client_name=***&***&***'"
    known = "known: sentinel_username, sentinel_password, client_name; percent-encode & = in a value as %26 %3D"
    assert info.value.problems == [
        f"url {shown} has an unknown option 'sentinel_usrname' (did you mean sentinel_username?); {known}",
        f"url {shown} has an unknown option (name not shown); {known}",
    ]


# Keyword arguments checked like the variables they stand for.


def test_a_password_given_as_a_keyword_of_the_wrong_type_is_named_by_its_type_only() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h:1"}, password=73519846)
    assert info.value.problems == ["keyword argument password is a int; expected a str or a redis_ha Secret"]


# Time settings: finite numbers of seconds only.

TIME_VARIABLES = [
    "REDIS_RETRY_DEADLINE",
    "REDIS_CONNECT_TIMEOUT",
    "REDIS_SOCKET_TIMEOUT",
    "REDIS_SENTINEL_TIMEOUT",
    "REDIS_HEALTH_CHECK_INTERVAL",
]
NOT_FINITE = ["inf", "INF", "+inf", "-inf", "Infinity", "nan", "NaN", "-nan", "1e999", " inf "]


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("variable", TIME_VARIABLES)
def test_inf_and_nan_are_refused_for_every_time_variable(variable: str, value: str) -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h:1", variable: value})
    (problem,) = info.value.problems
    assert problem.startswith(f"{variable} is '{value.strip()}'")
    assert "expected a finite number of seconds" in problem


TIME_KEYWORDS = [
    "retry_deadline_s",
    "connect_timeout_s",
    "socket_timeout_s",
    "sentinel_timeout_s",
    "health_check_interval_s",
]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "nan", "1e999", True, [1]], ids=repr)
@pytest.mark.parametrize("keyword", TIME_KEYWORDS)
def test_connect_refuses_inf_nan_and_non_numbers_as_time_keywords(keyword: str, value: object) -> None:
    overrides: dict[str, Any] = {keyword: value}
    with pytest.raises(redis_ha.ConfigError) as info:
        redis_ha.connect(env={"REDIS_SENTINELS": "h:1"}, **overrides)
    (problem,) = info.value.problems
    assert problem.startswith(f"keyword argument {keyword} is ")
    assert "expected a finite number of seconds" in problem


def test_a_zero_health_check_interval_turns_checks_off_but_a_zero_timeout_is_refused() -> None:
    unchecked = load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_HEALTH_CHECK_INTERVAL": "0"})
    assert unchecked.health_check_interval_s == 0
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_CONNECT_TIMEOUT": "0"}, retry_deadline_s=0)
    assert info.value.problems == [
        "REDIS_CONNECT_TIMEOUT is '0'; expected a finite number of seconds, greater than 0, e.g. 30 or 0.5",
        "keyword argument retry_deadline_s is '0'; expected a finite number of seconds, greater than 0, e.g. 30 or 0.5",
    ]


def test_time_settings_accept_whole_and_fractional_seconds() -> None:
    s = load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_RETRY_DEADLINE": "2.5", "REDIS_SOCKET_TIMEOUT": "3"})
    assert (s.retry_deadline_s, s.socket_timeout_s) == (2.5, 3.0)


def test_other_keyword_arguments_of_the_wrong_type_are_named_with_the_expected_form() -> None:
    with pytest.raises(redis_ha.ConfigError) as info:
        load_settings(env={"REDIS_SENTINELS": "h:1"}, db="2", tls="yes", master_name=5, watched_sentinels=0)
    assert info.value.problems == [
        "keyword argument db is '2'; expected a whole number of at least 0",
        "keyword argument tls is 'yes'; expected True or False",
        "keyword argument master_name is 5; expected a str",
        "keyword argument watched_sentinels is 0; expected a whole number of at least 1",
    ]


# Misspelt variables: one warning per process, naming the closest known one.


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """As if this were a new process: no variable warned about yet."""
    monkeypatch.setattr(config_module, "_warned_env_vars", set())
    caplog.set_level(logging.WARNING, logger="redis_ha.config")
    return caplog


def test_a_misspelt_variable_gets_one_warning_naming_the_closest_known_one(
    fresh_warnings: pytest.LogCaptureFixture,
) -> None:
    env = {"REDIS_SENTINELS": "h:1", "REDIS_PASWORD": "Kx7Qe-not-shown", "RQ_JOB_TIMOUT": "60"}
    for _ in range(3):
        redis_ha.connect(env=env)
    (record,) = fresh_warnings.records
    message = record.getMessage()
    assert "REDIS_PASWORD (did you mean REDIS_PASSWORD?)" in message
    assert "RQ_JOB_TIMOUT (did you mean RQ_JOB_TIMEOUT?)" in message
    assert "Kx7Qe" not in message and "60" not in message


def test_a_new_misspelling_later_in_the_process_gets_its_own_warning(
    fresh_warnings: pytest.LogCaptureFixture,
) -> None:
    load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_MASTERNAME": "jobs"})
    load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_MASTERNAME": "jobs", "REDIS_SOCKET_TIMEOT": "1"})
    assert [r.getMessage().count("did you mean") for r in fresh_warnings.records] == [1, 1]
    assert "REDIS_SOCKET_TIMEOT (did you mean REDIS_SOCKET_TIMEOUT?)" in fresh_warnings.records[1].getMessage()


def test_variables_the_kit_or_other_software_reads_are_not_reported(
    fresh_warnings: pytest.LogCaptureFixture,
) -> None:
    env = {name: "x" for name in KNOWN_ENV_VARS | OTHERS_ENV_VARS}
    env |= {
        "REDIS_SERVICE_HOST": "10.96.0.7",  # Kubernetes links of a Service named redis
        "REDIS_SERVICE_PORT_REDIS": "6379",
        "REDIS_PORT_6379_TCP_ADDR": "10.96.0.7",
        "REDIS_SENTINEL_PORT_26379_TCP": "tcp://10.96.0.8:26379",
        "REDISCLI_AUTH": "x",
        "PATH": "/usr/bin",
    }
    assert unknown_env_vars(env) == []
    with pytest.raises(redis_ha.ConfigError):
        load_settings(env=env)
    assert fresh_warnings.records == []


def test_a_name_close_to_nothing_is_still_reported() -> None:
    assert unknown_env_vars(["RQ_ZZZZZZZZZZZZZZZZ"]) == ["RQ_ZZZZZZZZZZZZZZZZ (no known variable is close)"]


def test_every_variable_the_kit_reads_is_known_to_the_typo_check() -> None:
    """Every REDIS_* / RQ_* name in the client's code (rq/defaults.py, cli.py, drills ...) is known,
    so adding a variable without listing it makes this fail instead of warning users."""
    named = set()
    for path in CLIENT_SOURCE.rglob("*.py"):
        named |= set(re.findall(r"\b(?:REDIS|RQ)_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert unknown_env_vars(named) == []
    assert {"RQ_OUTBOX_PATH", "RQ_DURABLE_TIMEOUT_MS", "RQ_ENQUEUE_DEDUP_TTL", "REDIS_HA_METRICS_ADDR"} <= named


# A user with nopass.


def test_a_user_name_alone_is_accepted_for_a_user_with_nopass() -> None:
    s = load_settings(env={"REDIS_SENTINELS": "h:1", "REDIS_USERNAME": "worker", "REDIS_SENTINEL_USERNAME": "watch"})
    assert (s.username, s.password, s.sentinel_username, s.sentinel_password) == ("worker", None, "watch", None)
    assert "user 'worker' without password" in s.describe()
    assert load_settings("redis://worker@h:6379/0", env={}).username == "worker"


def test_a_nopass_user_reaches_the_master_and_the_sentinels_with_its_name_alone(
    cluster_module: LoopbackCluster,
) -> None:
    """redis-py sends ``AUTH worker ""`` (or ``HELLO 3 AUTH worker ""``), which a nopass user accepts."""
    cluster = cluster_module
    admins = [cluster.redis_client(node) for node in cluster.nodes]
    sentinels = [cluster.sentinel_client(i) for i in range(len(cluster.sentinels))]
    client = None
    try:
        for admin in admins:
            admin.execute_command("ACL", "SETUSER", "worker", "on", "nopass", *APP_ACL_RULES)
        for sentinel in sentinels:
            sentinel.execute_command("ACL", "SETUSER", "watch", "on", "nopass", "+@all")
        client = redis_ha.connect(
            env={
                "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in cluster.sentinel_addrs),
                "REDIS_MASTER_NAME": cluster.master_name,
                "REDIS_USERNAME": "worker",
                "REDIS_SENTINEL_USERNAME": "watch",
                "REDIS_RETRY_DEADLINE": "5",
            }
        )
        client.set("nopass:key", "written")
        assert client.get("nopass:key") == b"written"
        assert client.acl_whoami() == "worker"
        client.delete("nopass:key")
    finally:
        if client is not None:
            client.close()
        for admin in admins:
            admin.execute_command("ACL", "DELUSER", "worker")
            admin.close()
        for sentinel in sentinels:
            sentinel.execute_command("ACL", "DELUSER", "watch")
            sentinel.close()


APP_ACL_RULES = ["~*", "&*", "+@all", "-@dangerous", "+info", "+role", "+client|list"]
"""The loopback cluster's application ACL (tests.support.cluster.APP_ACL), for the nopass user."""
