"""The retry decisions, as pure functions: what counts as a topology change and what may repeat."""

from __future__ import annotations

import redis
from redis._parsers.base import BaseParser
from redis.sentinel import MasterNotFoundError
from redis_ha.commands import block_seconds, read_timeout_for, safe_to_repeat
from redis_ha.errors import AuthError, ConfigError, NotDurable, TopologyChanged
from redis_ha.judgement import Verdict, classify
from redis_ha.reconnect import BACKOFF_CAP_S, backoff_s


def test_server_rejections_mean_the_command_did_not_run() -> None:
    # Built the way redis-py builds them: it strips the code of the replies it maps to a class.
    for reply in (
        "READONLY You can't write against a read only replica.",
        "NOREPLICAS Not enough good replicas to write.",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "LOADING Redis is loading the dataset in memory",
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        "TRYAGAIN Multiple keys request during rehashing of slot",
    ):
        error = BaseParser.parse_error(reply)
        assert classify(error) is Verdict.NOT_RUN, f"{reply} -> {type(error).__name__}({error})"


def test_rejection_inside_a_pipeline_is_recognised() -> None:
    error = redis.ResponseError("Command # 1 (SET a 1) of pipeline caused error: READONLY You can't write")
    assert classify(error) is Verdict.NOT_RUN


def test_readonly_on_a_replica_client_is_the_callers_mistake() -> None:
    error = BaseParser.parse_error("READONLY You can't write against a read only replica.")
    assert classify(error, "replica") is Verdict.OTHER
    assert classify(error, "master") is Verdict.NOT_RUN


def test_broken_connections_leave_the_outcome_open() -> None:
    assert classify(redis.ConnectionError("Connection closed by server.")) is Verdict.MAYBE_RUN
    assert classify(redis.TimeoutError("Timeout reading")) is Verdict.MAYBE_RUN
    assert classify(TopologyChanged("answered ROLE slave")) is Verdict.MAYBE_RUN
    assert classify(NotDurable("only 0 of 1 replicas")) is Verdict.MAYBE_RUN
    assert classify(MasterNotFoundError("no sentinel answered")) is Verdict.NOT_RUN


def test_credentials_refused_are_never_retried() -> None:
    assert classify(redis.AuthenticationError("invalid username-password pair")) is Verdict.AUTH
    assert classify(redis.ResponseError("WRONGPASS invalid username-password pair")) is Verdict.AUTH
    assert classify(AuthError("every sentinel refused")) is Verdict.AUTH


def test_ordinary_errors_belong_to_the_caller() -> None:
    assert classify(redis.ResponseError("WRONGTYPE Operation against a key")) is Verdict.OTHER
    assert classify(ConfigError(["bad"])) is Verdict.OTHER
    assert classify(ValueError("x")) is Verdict.OTHER


def test_only_commands_that_may_run_twice_are_repeatable() -> None:
    assert safe_to_repeat(["SET", "GET", "EXPIRE", "HSET", "BLMOVE", "LPOP"])
    assert not safe_to_repeat(["SET", "INCR"])
    assert not safe_to_repeat(["RPUSH"])
    assert not safe_to_repeat(["EVALSHA"])


def test_blocking_commands_get_their_own_read_timeout() -> None:
    assert block_seconds(("BLMOVE", "a", "b", "LEFT", "RIGHT", 5)) == 5.0
    assert block_seconds(("BLPOP", "a", "b", 0)) == 0.0
    assert block_seconds(("BLMPOP", 2.5, 1, "a", "LEFT")) == 2.5
    assert block_seconds(("XREAD", "BLOCK", 1500, "STREAMS", "s", "$")) == 1.5
    assert block_seconds(("WAIT", 1, 200)) == 0.2
    assert block_seconds(("GET", "a")) is None
    assert read_timeout_for(5, 5) == 10
    assert read_timeout_for(0, 5) is None


def test_a_stream_reads_block_argument_is_found_however_redis_py_spells_it() -> None:
    for word in ("BLOCK", b"BLOCK", "block", b"Block"):
        assert block_seconds(("XREAD", word, 6000, "STREAMS", "s", "$")) == 6.0
    assert block_seconds((b"XREAD", b"COUNT", 1, b"BLOCK", 0, b"STREAMS", b"s", b"$")) == 0.0
    # A group, consumer or stream named "block" is not the BLOCK option.
    assert block_seconds(("XREADGROUP", b"GROUP", b"block", b"c", b"BLOCK", 2500, b"STREAMS", b"s", b">")) == 2.5
    assert block_seconds(("XREADGROUP", "GROUP", "g", "block", "STREAMS", "block", ">")) is None
    assert block_seconds(("XREAD", b"STREAMS", b"block", b"$")) is None


def test_backoff_is_jittered_and_capped() -> None:
    samples = [backoff_s(n) for n in range(1, 30) for _ in range(20)]
    assert all(0 <= s <= BACKOFF_CAP_S for s in samples)
    assert len(set(samples)) > 100
