"""Recognising a replica promoted out of our master's replication stream, from observed state only."""

from __future__ import annotations

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
