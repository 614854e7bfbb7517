"""Which Sentinel messages concern the drilled master, and how what was heard is recorded."""

from __future__ import annotations

from redis_ha.drill.sentinel_events import concerns, heard


def test_messages_about_the_master_and_its_replicas_concern_it_others_do_not() -> None:
    assert concerns("mymaster", "master mymaster 10.0.0.1 6379 #quorum 2/2")
    assert concerns("mymaster", "slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster 10.0.0.1 6379")
    assert concerns("mymaster", "mymaster 10.0.0.1 6379 10.0.0.3 6379")  # +switch-master
    assert not concerns("mymaster", "master other 10.0.0.9 6379")
    assert not concerns("mymaster", "slave 10.0.0.8:6379 10.0.0.8 6379 @ other 10.0.0.9 6379")
    assert not concerns("mymaster", "")
    assert not concerns("mymaster", "slave 10.0.0.8:6379 10.0.0.8 6379 @")


def test_what_was_heard_keeps_the_sentinel_then_the_message() -> None:
    event = heard(5.0, ("10.0.0.2", 26379), "+odown", "master mymaster 10.0.0.1 6379 #quorum 2/2")
    assert (event.at, event.name) == (5.0, "+odown")
    assert event.detail == "10.0.0.2:26379 master mymaster 10.0.0.1 6379 #quorum 2/2"
