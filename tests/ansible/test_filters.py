"""The decisions the roles make, tested as the pure functions they are (no hosts, no sockets)."""

from __future__ import annotations

from typing import Any

from tests.ansible.conftest import GOOD_PASSWORDS, load_plugin

topology = load_plugin("topology")
redis_conf = load_plugin("redis_conf")
inventory = load_plugin("inventory")


def answer(item: str, stdout: str = "", rc: int = 0) -> dict[str, Any]:
    return {"item": item, "rc": rc, "stdout": stdout}


NODES = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
DOWN = [answer(node, "", 1) for node in NODES]


def test_first_deploy_uses_the_inventorys_initial_primary() -> None:
    decision = topology.decide_master(DOWN, DOWN, "10.0.0.1")
    assert decision["address"] == "10.0.0.1"
    assert decision["live"] is False
    assert decision["votes"] == 0
    assert "first deploy" in decision["reason"]


def test_sentinels_outvote_the_inventory_after_a_failover() -> None:
    sentinels = [answer(node, "10.0.0.2\n6379") for node in NODES]
    roles = [
        answer("10.0.0.1", "slave\n10.0.0.2\n6379\nconnected\n100"),
        answer("10.0.0.2", "master\n100\n10.0.0.1\n6379\n100\n10.0.0.3\n6379\n100"),
        answer("10.0.0.3", "slave\n10.0.0.2\n6379\nconnected\n100"),
    ]
    decision = topology.decide_master(sentinels, roles, "10.0.0.1")
    assert decision == {
        "address": "10.0.0.2",
        "live": True,
        "votes": 3,
        "reason": "3 of 3 Sentinels name 10.0.0.2 as master",
    }


def test_split_sentinels_follow_the_majority_and_say_so() -> None:
    sentinels = [
        answer("10.0.0.1", "10.0.0.2\n6379"),
        answer("10.0.0.2", "10.0.0.2\n6379"),
        answer("10.0.0.3", "10.0.0.1\n6379"),
    ]
    decision = topology.decide_master(sentinels, DOWN, "10.0.0.1")
    assert decision["address"] == "10.0.0.2"
    assert "others name 10.0.0.1" in decision["reason"]


def test_sentinel_errors_are_not_votes() -> None:
    sentinels = [answer(node, "NOAUTH Authentication required.") for node in NODES]
    roles = [answer("10.0.0.3", "master\n0"), *DOWN[:2]]
    decision = topology.decide_master(sentinels, roles, "10.0.0.1")
    assert decision["address"] == "10.0.0.3"
    # No Sentinel monitors it yet: a restart needs (and can have) no Sentinel failover.
    assert decision["votes"] == 0
    assert "only node that reports role master" in decision["reason"]


def test_of_several_masters_the_one_with_replicas_wins() -> None:
    roles = [
        answer("10.0.0.1", "master\n0"),
        answer("10.0.0.2", "master\n50\n10.0.0.3\n6379\n50"),
        answer("10.0.0.3", "slave\n10.0.0.2\n6379\nconnected\n50"),
    ]
    assert topology.decide_master(DOWN, roles, "10.0.0.1")["address"] == "10.0.0.2"


def test_replicas_point_at_the_master_when_it_is_down() -> None:
    roles = [
        answer("10.0.0.1", "", 1),
        answer("10.0.0.2", "slave\n10.0.0.1\n6379\nconnect\n-1"),
        answer("10.0.0.3", "slave\n10.0.0.1\n6379\nconnect\n-1"),
    ]
    decision = topology.decide_master(DOWN, roles, "10.0.0.3")
    assert decision["address"] == "10.0.0.1"
    assert decision["live"] is True


def test_redis_rewrite_formats_compare_equal() -> None:
    ours = '# c\nsave 3600 1 300 100\nmaxmemory 1024mb\nmasterauth "pw"\ndir /var/lib/redis\n'
    theirs = (
        'save 3600 1\nsave 300 100\nmaxmemory 1gb\nmasterauth pw\ndir "/var/lib/redis"\n'
        "latency-tracking-info-percentiles 50 99 99.9\n"
    )
    assert redis_conf.redis_conf_options(ours) == redis_conf.redis_conf_options(theirs)


def test_valkey_rewrite_names_compare_equal() -> None:
    """Valkey 8's CONFIG REWRITE (after a failover) renames masteruser/masterauth."""
    ours = 'masteruser replication\nmasterauth "pw"\nreplica-announce-ip 10.0.0.1\nreplicaof 10.0.0.2 6379\n'
    theirs = 'primaryuser "replication"\nprimaryauth "pw"\nslave-announce-ip "10.0.0.1"\nslaveof 10.0.0.2 6379\n'
    assert redis_conf.redis_conf_options(ours) == redis_conf.redis_conf_options(theirs)
    assert redis_conf.redis_conf_options("primaryauth other\n") != redis_conf.redis_conf_options(ours)


def test_a_real_setting_change_is_a_difference() -> None:
    assert redis_conf.redis_conf_options("maxmemory 1gb\n") != redis_conf.redis_conf_options("maxmemory 2gb\n")
    assert redis_conf.redis_conf_options("") == {}


def test_inventory_problems_are_all_reported_together() -> None:
    problems = inventory.inventory_problems(
        {
            "redis_hosts": ["a", "b"],
            "sentinel_hosts": ["a", "b"],
            "addresses": {"a": "10.0.0.1", "b": "10.0.0.1"},
            "initial_primaries": [],
            "quorum": None,
            "flavor": "redis",
            "master_name": "my master",
            "passwords": {**GOOD_PASSWORDS, "redis_app_password": "has a space in it!!"},
        }
    )
    assert len(problems) == 5, problems
    assert any("use at least 3" in p for p in problems)
    assert any("share the address 10.0.0.1" in p for p in problems)
    assert any("redis_ha_master_name is 'my master'" in p for p in problems)
    assert any("redis_app_password contains whitespace" in p for p in problems)
    assert any("redis_initial_primary" in p for p in problems)


acl = load_plugin("acl")
APP = {"name": "app", "password": "new-Pw-0123456789abcdef", "rules": "~* +@all"}
NEW = acl.password_hash("new-Pw-0123456789abcdef")
OLD = acl.password_hash("old-Pw-0123456789abcdef")


def test_a_first_deploy_gives_each_user_its_one_password_hash() -> None:
    assert acl.acl_lines([APP]) == [f"app reset on #{NEW} ~* +@all"]
    assert acl.acl_lines([{"name": "default", "rules": "off resetpass -@all"}]) == ["default reset off resetpass -@all"]


def test_a_rotated_password_keeps_the_old_hash_for_one_deploy_then_drops_it() -> None:
    before = f"user app reset on #{OLD} ~* +@all\n"
    during = acl.acl_lines([APP], before)
    assert during == [f"app reset on #{NEW} #{OLD} ~* +@all"]
    # The next deploy finds the new hash in place: only it stays.
    assert acl.acl_lines([APP], "user " + during[0]) == [f"app reset on #{NEW} ~* +@all"]
    # A password changed again before the old one was dropped keeps only the newest old hash.
    third = {**APP, "password": "third-Pw-0123456789abcdef"}
    assert acl.acl_lines([third], "user " + during[0]) == [
        f"app reset on #{acl.password_hash('third-Pw-0123456789abcdef')} #{NEW} ~* +@all"
    ]


def test_channels_are_reset_before_the_allowed_patterns() -> None:
    assert acl.acl_channels(["rq:*", "myapp:*"]) == "resetchannels &rq:* &myapp:*"
    assert acl.acl_channels([]) == "resetchannels"


def test_the_failover_gate_follows_the_last_attempt_or_vote() -> None:
    gate = load_plugin("sentinel").failover_gate
    journal = [
        "1000.5 redis1 redis-sentinel[7]: 7:X 01 Dec 2026 01:00:00.500 # +sdown master mymaster 10.0.0.1 6379",
        "1001.0 redis1 redis-sentinel[7]: 7:X 01 Dec 2026 01:00:01.000 # +try-failover master mymaster 10.0.0.1 6379",
        "1002.0 redis1 redis-sentinel[7]: 7:X 01 Dec 2026 01:00:02.000 # +vote-for-leader 3f2a 7",
    ]
    waiting = gate(journal, 30000, 1010.0)
    assert (waiting["event"], waiting["allowed_at"], waiting["wait_s"]) == ("+vote-for-leader", 1062.0, 52)
    assert waiting["reason"] == (
        "it voted in a failover election at 00:16:42 UTC, so it will not start another before "
        "00:17:42 UTC (in 52 s) (2 x failover-timeout = 60 s)"
    )
    assert gate(journal[:2], "30000", "1100")["wait_s"] == 0
    assert "it tried a failover at 00:16:41 UTC, so it may start one now" in gate(journal[:2], 30000, 1100)["reason"]
    assert gate(journal[:1], 30000, 1100)["event"] is None


def test_four_sentinels_are_accepted_as_a_step_between_three_and_five() -> None:
    problems = inventory.inventory_problems(
        {
            "redis_hosts": ["a", "b", "c", "d"],
            "sentinel_hosts": ["a", "b", "c", "d"],
            "addresses": {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3", "d": "10.0.0.4"},
            "initial_primaries": ["a"],
            "quorum": None,
            "flavor": "redis",
            "master_name": "mymaster",
            "passwords": GOOD_PASSWORDS,
        }
    )
    assert problems == []


SENTINEL_CONF_HALF_MOVED = """\
port 26379
tls-port 26380
sentinel announce-port 26379
sentinel monitor mymaster 10.0.0.1 6379 2
sentinel known-replica mymaster 10.0.0.2 6379
sentinel known-replica mymaster 10.0.0.2 6380
sentinel known-sentinel mymaster 10.0.0.2 26379 0123456789abcdef0123456789abcdef01234567
sentinel current-epoch 3
tls-replication no
"""


def test_a_sentinel_moved_to_tls_names_every_port_at_its_twin_once_and_keeps_its_listeners() -> None:
    moved = load_plugin("sentinel").sentinel_config_moved
    text = moved(SENTINEL_CONF_HALF_MOVED, {"6379": "6380", 26379: 26380}, True)
    assert text.splitlines() == [
        "port 26379",
        "tls-port 26380",
        "sentinel announce-port 26380",
        "sentinel monitor mymaster 10.0.0.1 6380 2",
        # The replica was listed at both ports; Sentinel refuses to start with two lines for one address.
        "sentinel known-replica mymaster 10.0.0.2 6380",
        "sentinel known-sentinel mymaster 10.0.0.2 26380 0123456789abcdef0123456789abcdef01234567",
        "sentinel current-epoch 3",
        "tls-replication yes",
    ]
    unmoved = load_plugin("sentinel").sentinel_config_unmoved
    assert unmoved(SENTINEL_CONF_HALF_MOVED, {6379: 6380, 26379: 26380}, True)
    assert not unmoved(text, {6379: 6380, 26379: 26380}, True)
    # Sentinel rewrites the file in its own order: moved is moved wherever the lines are.
    assert not unmoved("tls-replication yes\n" + text.replace("tls-replication yes\n", ""), {6379: 6380}, True)
    assert unmoved(text, {6379: 6380}, False)
    back = moved(text, {6380: 6379, 26380: 26379}, False)
    assert "sentinel monitor mymaster 10.0.0.1 6379 2" in back.splitlines()
    assert back.splitlines()[-1] == "tls-replication no"
    assert back.count("tls-replication") == 1


PLAIN_REDIS, PLAIN_SENTINEL = "port 6379\n", "port 26379\n"
BOTH_REDIS, BOTH_SENTINEL = "port 6379\ntls-port 6380\n", "port 26379\ntls-port 26380\n"
TLS_REDIS, TLS_SENTINEL = "port 0\ntls-port 6380\n", "port 0\ntls-port 26380\n"


def _plan(configs: dict[str, tuple[str | None, str | None]], tls: bool = True) -> dict[str, Any]:
    plan = load_plugin("tls_switch").tls_switch_plan
    return plan({h: {"redis": r, "sentinel": s} for h, (r, s) in configs.items()}, tls, 6380, 26380)  # type: ignore[no-any-return]


def test_a_switch_to_tls_starts_from_the_plain_ports_goes_on_half_way_and_ends_with_nothing_old() -> None:
    start = _plan({"n1": (PLAIN_REDIS, PLAIN_SENTINEL), "n2": (PLAIN_REDIS, PLAIN_SENTINEL)})
    assert start == {
        "old": {"redis": 6379, "sentinel": 26379},
        "done": False,
        "problems": [],
        "map": {"6379": 6380, "26379": 26380},
    }
    # Interrupted half way: one node closed its old port already, the others still have theirs.
    halfway = _plan({"n1": (TLS_REDIS, TLS_SENTINEL), "n2": (BOTH_REDIS, BOTH_SENTINEL)})
    assert halfway["old"] == {"redis": 6379, "sentinel": 26379}
    assert not halfway["done"] and not halfway["problems"]
    assert _plan({"n1": (TLS_REDIS, TLS_SENTINEL), "n2": (TLS_REDIS, TLS_SENTINEL)})["done"]
    back = _plan({"n1": (TLS_REDIS, TLS_SENTINEL)}, tls=False)
    assert back["problems"] == [
        "redis_ha_redis_port is 6380, the port redis serves TLS on (on n1): one port cannot serve both while the "
        "cluster moves; choose a free port for plain text, e.g. 6381.",
        "redis_ha_sentinel_port is 26380, the port sentinel serves TLS on (on n1): one port cannot serve both while "
        "the cluster moves; choose a free port for plain text, e.g. 26381.",
    ]


def test_a_switch_that_cannot_be_done_says_what_to_fix() -> None:
    same_port = _plan({"n1": ("port 6380\n", PLAIN_SENTINEL), "n2": ("port 6380\n", PLAIN_SENTINEL)})
    assert same_port["problems"][0].startswith(
        "redis_ha_redis_port is 6380, the port redis serves plain text on (on n1, n2)"
    )
    moved = _plan({"n1": ("port 0\ntls-port 6390\n", TLS_SENTINEL)})
    assert moved["problems"] == [
        "n1's redis serves TLS on port 6390, not redis_ha_redis_port 6380: the kit does not move a port within one "
        "mode; set redis_ha_redis_port back to 6390."
    ]
    apart = _plan({"n1": (PLAIN_REDIS, PLAIN_SENTINEL), "n2": ("port 6378\n", PLAIN_SENTINEL)})
    assert "serve plain text on different ports (6378, 6379)" in apart["problems"][0]
    missing = _plan({"n1": (None, PLAIN_SENTINEL)})
    assert missing["problems"][0].startswith("n1 has no redis config yet")
    assert not missing["done"]
