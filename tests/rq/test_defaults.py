"""RQ job defaults from RQ_* variables: every malformed one named in one error."""

from __future__ import annotations

import pytest
from redis_ha import ConfigError
from redis_ha.rq.defaults import DURABLE_ALL, RQSettings, load_rq_settings


def test_unset_variables_give_the_documented_defaults() -> None:
    s = load_rq_settings({})
    assert (s.retry_max, s.retry_intervals_s, s.job_timeout_s) == (3, (10, 30, 60), 180)
    assert s.durable_replicas == 0
    assert s.outbox_path is None


def test_variables_override_the_defaults() -> None:
    s = load_rq_settings(
        {
            "RQ_RETRY_MAX": "5",
            "RQ_RETRY_INTERVALS": "1, 2,3",
            "RQ_JOB_TIMEOUT": "-1",
            "RQ_RESULT_TTL": "0",
            "RQ_FAILURE_TTL": "60",
            "RQ_DURABLE": "all",
            "RQ_OUTBOX_PATH": "/var/lib/app/outbox.db",
        }
    )
    assert (s.retry_max, s.retry_intervals_s, s.job_timeout_s, s.result_ttl_s, s.failure_ttl_s) == (
        5,
        (1, 2, 3),
        -1,
        0,
        60,
    )
    assert s.durable_replicas == DURABLE_ALL
    assert s.outbox_path == "/var/lib/app/outbox.db"


def test_every_malformed_variable_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_rq_settings(
            {"RQ_RETRY_MAX": "three", "RQ_RETRY_INTERVALS": "10,x", "RQ_JOB_TIMEOUT": "0", "RQ_DURABLE": "maybe"}
        )
    text = str(caught.value)
    for var in ("RQ_RETRY_MAX", "RQ_RETRY_INTERVALS", "RQ_JOB_TIMEOUT", "RQ_DURABLE"):
        assert var in text
    assert len(caught.value.problems) == 4


def test_the_enqueue_dedup_ttl_defaults_to_a_day_and_0_turns_the_marker_off() -> None:
    assert load_rq_settings({}).enqueue_dedup_ttl_s == 24 * 3600
    assert load_rq_settings({"RQ_ENQUEUE_DEDUP_TTL": "3600"}).enqueue_dedup_ttl_s == 3600
    assert load_rq_settings({"RQ_ENQUEUE_DEDUP_TTL": "0"}).enqueue_dedup_ttl_s == 0
    assert "enqueue dedup off" in load_rq_settings({"RQ_ENQUEUE_DEDUP_TTL": "0"}).describe()


@pytest.mark.parametrize("value", ["-1", "1d", "86400.5", "twelve"])
def test_a_bad_enqueue_dedup_ttl_is_named_with_the_expected_form(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rq_settings({"RQ_ENQUEUE_DEDUP_TTL": value, "RQ_JOB_TIMEOUT": "soon"})
    assert caught.value.problems[-1].startswith(f"RQ_ENQUEUE_DEDUP_TTL is '{value}'; expected a whole number")
    assert len(caught.value.problems) == 2  # reported together with the other bad variable


RQ_DURATIONS = ["RQ_JOB_TIMEOUT", "RQ_RESULT_TTL", "RQ_FAILURE_TTL", "RQ_DURABLE_TIMEOUT_MS", "RQ_ENQUEUE_DEDUP_TTL"]


@pytest.mark.parametrize("value", ["inf", "-inf", "+INF", "Infinity", "nan", "NaN", "1e999"])
@pytest.mark.parametrize("variable", RQ_DURATIONS)
def test_inf_and_nan_are_refused_for_every_rq_duration_naming_the_unit(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rq_settings({variable: value})
    (problem,) = caught.value.problems
    unit = "milliseconds" if variable.endswith("_MS") else "seconds"
    assert problem.startswith(f"{variable} is '{value}', which is not finite (inf and nan are refused); ")
    assert f"expected a whole number of {unit} of at least" in problem


@pytest.mark.parametrize("value", ["10,inf", "nan", "10,1e999", "²"])
def test_inf_and_nan_are_refused_in_the_retry_intervals(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rq_settings({"RQ_RETRY_INTERVALS": value})
    assert caught.value.problems == [
        f"RQ_RETRY_INTERVALS is '{value}'; expected whole seconds separated by commas, e.g. 10,30,60 (not inf or nan)"
    ]


def test_a_digit_that_is_not_a_number_is_refused_not_a_crash() -> None:
    with pytest.raises(ConfigError, match="RQ_DURABLE is '²'; expected 0"):
        load_rq_settings({"RQ_DURABLE": "²"})


def test_settings_built_in_code_refuse_inf_and_nan_too() -> None:
    with pytest.raises(ConfigError) as caught:
        RQSettings(job_timeout_s=float("inf"), durable_timeout_ms=float("nan"), retry_intervals_s=(1, float("inf")))  # type: ignore[arg-type]
    assert caught.value.problems == [
        "RQSettings retry_intervals_s is (1, inf); expected a tuple of whole numbers of seconds",
        "RQSettings job_timeout_s is inf; expected a whole number of seconds",
        "RQSettings durable_timeout_ms is nan; expected a whole number of milliseconds",
    ]
