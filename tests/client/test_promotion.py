"""Recognising a replica promoted out of our master's replication stream, from observed state only."""

from __future__ import annotations

import redis
from redis._parsers.base import BaseParser
from redis_ha.errors import NotDurable
from redis_ha.judgement import master_is_alive
from redis_ha.promotion import parse_info, promoted_from, replicas_in_role_reply

OLD_REPLID = "b8159f819382a76905d6994e49d0b6c514474fab"


def test_promoted_replica_carries_the_old_masters_history() -> None:
    info = parse_info(
        b"# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
        b"master_replid:3e1f0000aa\r\nmaster_replid2:" + OLD_REPLID.encode() + b"\r\nsecond_repl_offset:426\r\n"
    )
    assert promoted_from(info, OLD_REPLID)


def test_node_restarted_empty_is_not_taken_for_the_new_master() -> None:
    info = {"role": "master", "master_replid": "fresh", "master_replid2": "0" * 40}
    assert not promoted_from(info, OLD_REPLID)


def test_a_replica_still_replicating_is_not_a_master() -> None:
    assert not promoted_from({"role": "slave", "master_replid2": OLD_REPLID}, OLD_REPLID)


def test_unknown_lineage_never_matches() -> None:
    assert not promoted_from({"role": "master", "master_replid2": ""}, "")


def test_replicas_are_read_from_a_masters_role_reply() -> None:
    reply = [b"master", 425, [[b"127.0.0.1", b"56805", b"0"], ["10.0.0.2", "6379", "12"]]]
    assert replicas_in_role_reply(reply) == [("127.0.0.1", 56805), ("10.0.0.2", 6379)]
    assert replicas_in_role_reply([b"master", 0, []]) == []


def test_a_master_refusing_for_want_of_replicas_is_alive_so_its_replicas_are_not_probed() -> None:
    """A master just promoted answers NOREPLICAS until its replicas attach; asking its replicas
    whether one took over from it would only wait on the dead old master among them."""
    alone = BaseParser.parse_error("NOREPLICAS Not enough good replicas to write.")
    in_pipeline = redis.ResponseError("Command # 1 (SET k v) of pipeline caused error: NOREPLICAS Not enough")
    assert master_is_alive(alone)
    assert master_is_alive(in_pipeline)
    assert master_is_alive(NotDurable("not confirmed by replicas", []))


def test_silence_or_a_demoted_node_still_lets_the_client_look_for_a_promoted_replica() -> None:
    assert not master_is_alive(redis.ConnectionError("Error 111 connecting to 10.0.0.1:6379. Connection refused."))
    assert not master_is_alive(redis.TimeoutError("Timeout reading from socket"))
    assert not master_is_alive(BaseParser.parse_error("READONLY You can't write against a read only replica."))
    assert not master_is_alive(BaseParser.parse_error("LOADING Redis is loading the dataset in memory"))
