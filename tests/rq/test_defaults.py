"""RQ job defaults from RQ_* variables: every malformed one named in one error."""

from __future__ import annotations

import pytest
from redis_ha import ConfigError
from redis_ha.rq.defaults import DURABLE_ALL, load_rq_settings


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
