"""Every public variable is documented in its role's argument spec, and the spec is enforced."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.ansible.conftest import GOOD_PASSWORDS, PLAYBOOKS, ROLE_NAMES, ROLES, run_playbook


def defaults_of(role: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}
    return data


def spec_options(role: str) -> dict[str, dict[str, Any]]:
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    options: dict[str, dict[str, Any]] = spec["argument_specs"]["main"]["options"]
    return options


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_documented_in_the_argument_spec_and_vice_versa(role: str) -> None:
    options = spec_options(role)
    documented_with_default = {name for name, option in options.items() if not option.get("required")}
    assert set(defaults_of(role)) == documented_with_default


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_spec_defaults_match_the_role_defaults(role: str) -> None:
    options = spec_options(role)
    for name, value in defaults_of(role).items():
        option = options[name]
        assert option.get("description"), f"{role}: {name} has no description"
        if isinstance(value, str) and "{{" in value:
            assert "default" not in option, f"{role}: {name} is computed; the spec must not claim a literal default"
        else:
            assert option.get("default") == value, f"{role}: {name} default differs from defaults/main.yml"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_required_secrets_have_no_default_and_are_hidden_from_logs(role: str) -> None:
    for name, option in spec_options(role).items():
        if option.get("required"):
            assert name not in defaults_of(role)
            if name.endswith("password"):
                assert option.get("no_log") is True, name


def test_redis_ha_requires_every_secret() -> None:
    required = {name for name, option in spec_options("redis_ha").items() if option.get("required")}
    assert required == set(GOOD_PASSWORDS)


@pytest.mark.parametrize(
    ("role", "arguments", "message"),
    [
        (
            "redis",
            {"redis_appendfsync": "sometimes"},
            "value of redis_appendfsync must be one of: always, everysec, no, got: sometimes",
        ),
        (
            "redis",
            {"redis_maxmemory_policy": "allkeys-everything"},
            "value of redis_maxmemory_policy must be one of: noeviction",
        ),
        (
            "redis",
            {"redis_min_replicas_to_write": "one"},
            "argument 'redis_min_replicas_to_write' is of type str and we were unable to convert to int",
        ),
        (
            "sentinel",
            {"sentinel_quorum": "many"},
            "argument 'sentinel_quorum' is of type str and we were unable to convert to int",
        ),
        (
            "redis_exporter",
            {"redis_exporter_log_format": "xml"},
            "value of redis_exporter_log_format must be one of: txt, json, got: xml",
        ),
    ],
)
def test_a_bad_variable_fails_with_its_argument_spec_message(
    role: str, arguments: dict[str, Any], message: str
) -> None:
    result = run_playbook(PLAYBOOKS / "validate_spec.yml", None, {"spec_role": role, "spec_arguments": arguments})
    assert not result.ok
    assert message in result.output


def test_a_good_variable_passes_the_argument_spec() -> None:
    result = run_playbook(
        PLAYBOOKS / "validate_spec.yml", None, {"spec_role": "redis", "spec_arguments": {"redis_appendfsync": "always"}}
    )
    assert result.ok, result.output


def test_entering_a_role_with_a_bad_variable_stops_before_any_task() -> None:
    result = run_playbook(PLAYBOOKS / "role_entry.yml", None, {**GOOD_PASSWORDS, "redis_ha_flavor": "keydb"}, "--check")
    assert not result.ok
    assert "value of redis_ha_flavor must be one of: redis, valkey, got: keydb" in result.output
    assert "Install the command-line client" not in result.output
