"""An outage logs one line when it starts or changes kind, again at a low rate, and one when it ends."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from redis_ha.judgement import judge
from redis_ha.outage import Lines, Outage
from redis_ha.reconnect import LOOP_PAUSE_MAX_S, LOOP_PAUSE_MIN_S, loop_pause_s

LOGGER = logging.getLogger("tests.outage")
LINES = Lines(
    lost={"lost": "lost ({error})", "refused": "refused ({error})"},
    still="still after {attempts} attempts ({error})",
    back="back after {seconds:.0f}s",
)


def test_many_failures_make_one_line_until_it_is_time_to_say_it_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests.outage")
    outage = Outage(LOGGER, LINES, say_again_s=0.2)
    assert outage.failed("ConnectionError: refused", kind="lost")
    for _ in range(50):
        assert not outage.failed("ConnectionError: refused", kind="lost")
    time.sleep(0.25)
    outage.failed("ConnectionError: refused", kind="lost")
    outage.failed("NoPermissionError: NOPERM", kind="refused", level=logging.ERROR)  # a new kind: said at once
    assert outage.recovered() is not None
    assert outage.recovered() is None  # nothing to end twice
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert said == [
        ("WARNING", "lost (ConnectionError: refused)"),
        ("WARNING", "still after 52 attempts (ConnectionError: refused)"),
        ("ERROR", "refused (NoPermissionError: NOPERM)"),
        ("WARNING", "back after 0s"),
    ]


def test_the_master_is_silent_only_while_failures_are_not_answers_from_a_working_master() -> None:
    outage = Outage(LOGGER, Lines(lost="lost ({error})", still="still ({error})", back="back"))
    assert not outage.master_silent
    refused = judge(redis.ResponseError("NOREPLICAS Not enough good replicas to write."))
    assert refused.master_answered and "NOREPLICAS" in refused.reason
    outage.failed("NOREPLICAS", master_answered=refused.master_answered)
    assert outage.ongoing and not outage.master_silent
    outage.failed("timeout", master_answered=judge(redis.TimeoutError("Timeout reading")).master_answered)
    assert outage.master_silent


def test_background_loops_pause_between_a_floor_and_a_cap() -> None:
    pauses = [loop_pause_s(n) for n in range(0, 40) for _ in range(10)]
    assert all(LOOP_PAUSE_MIN_S <= p <= LOOP_PAUSE_MAX_S for p in pauses)
    assert max(pauses) > 1.0  # it grows
