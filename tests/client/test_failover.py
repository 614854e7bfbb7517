"""redis_ha against real redis-server and redis-sentinel processes: failover is a non-event."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis_ha

from tests.support.cluster import LoopbackCluster
from tests.support.write_loss import planned_failover

pytestmark = pytest.mark.integration

WRITE_INTERVAL_S = 0.005
LOOP_LIMIT_S = 30.0


_OPEN_CLIENTS: list[redis_ha.HARedis] = []


def ha_client(cluster: LoopbackCluster, **overrides: Any) -> redis_ha.HARedis:
    """A client of the test's cluster, closed after the test (``close_clients``)."""
    client = redis_ha.connect(env=cluster.env(), **overrides)
    _OPEN_CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close what a test opened: a client left open keeps its process's Sentinel watcher reaching for
    the addresses of a cluster that is gone, which the next test's cluster may be listening on."""
    yield
    while _OPEN_CLIENTS:
        _OPEN_CLIENTS.pop().close()


def admin_of(cluster: LoopbackCluster, addr: tuple[str, int]) -> redis.Redis:
    return redis.Redis(
        host=addr[0], port=addr[1], username=cluster.admin_user, password=cluster.admin_password, decode_responses=True
    )


class Writer(threading.Thread):
    """Writes durable keys in a bounded loop, recording what was acknowledged and what surfaced."""

    def __init__(self, client: redis_ha.HARedis, replicas: int = 1) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.replicas = replicas
        self.acknowledged: list[int] = []
        self.errors: list[BaseException] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + LOOP_LIMIT_S
        n = 0
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                pipe = self.client.durable_pipeline(replicas=self.replicas, timeout_ms=500)
                pipe.set(f"w:{n}", n)
                pipe.execute()
                self.acknowledged.append(n)
            except Exception as error:  # a surfaced error is exactly what these tests look for
                self.errors.append(error)
            n += 1
            time.sleep(WRITE_INTERVAL_S)


def _wait_for_acknowledged(writer: Writer, count: int, timeout_s: float = 30.0) -> None:
    """Until ``writer`` has ``count`` writes acknowledged (or has failed: the caller's asserts say how)."""
    deadline = time.monotonic() + timeout_s
    while len(writer.acknowledged) < count and writer.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(writer.acknowledged) >= count, (
        f"{len(writer.acknowledged)} of {count} writes acknowledged in {timeout_s:.0f} s"
    )


def assert_every_acknowledged_write_present(cluster: LoopbackCluster, writer: Writer) -> None:
    master = admin_of(cluster, cluster.master_addr())
    keys = [f"w:{n}" for n in writer.acknowledged]
    values = master.mget(keys)
    missing = [k for k, v in zip(keys, values, strict=True) if v is None]
    assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"


def test_discovers_the_master_with_one_sentinel_down(cluster: LoopbackCluster) -> None:
    cluster.kill_sentinel(0)
    client = ha_client(cluster)
    assert client.set("k", "v")
    assert client.get("k") == b"v"
    assert client.master_address == cluster.master_addr()


def test_kill_master_during_writes_surfaces_no_error_and_keeps_acknowledged_writes(
    cluster: LoopbackCluster, caplog: pytest.LogCaptureFixture
) -> None:
    client = ha_client(cluster)
    writer = Writer(client)
    with caplog.at_level(logging.INFO, logger="redis_ha"):
        writer.start()
        # Counted, not timed: a loaded machine only takes longer.
        _wait_for_acknowledged(writer, 50)
        old = cluster.kill_master()
        new = cluster.wait_for_master_change(old)
        _wait_for_acknowledged(writer, len(writer.acknowledged) + 50)
        writer.stop_event.set()
        writer.join(LOOP_LIMIT_S)
    assert writer.errors == []
    assert client.master_address == new
    assert len(writer.acknowledged) >= 100
    assert_every_acknowledged_write_present(cluster, writer)
    # One line per state change, never one per retry.
    lost = [r for r in caplog.records if r.getMessage().startswith("Lost the master")]
    assert len(lost) == 1
    assert len([r for r in caplog.records if r.name.startswith("redis_ha")]) < 15


def test_sentinel_failover_during_writes_surfaces_no_error(cluster: LoopbackCluster) -> None:
    """In a planned failover the old master takes writes until Sentinel converts it, and a replica
    not yet moved to the new master acknowledges them, then resyncs them away. Waiting for every
    replica closes that window (the kit's own planned failovers pause writes first instead)."""
    client = ha_client(cluster)
    writer = Writer(client, replicas=cluster.num_replicas)
    writer.start()
    time.sleep(0.5)
    old = cluster.master_addr()
    cluster.sentinel_failover()
    new = cluster.wait_for_master_change(old)
    time.sleep(1.0)
    writer.stop_event.set()
    writer.join(LOOP_LIMIT_S)
    assert writer.errors == []
    assert client.master_address == new
    assert_every_acknowledged_write_present(cluster, writer)


def _blmove_in_thread(client: redis_ha.HARedis, result: dict[str, Any]) -> threading.Thread:
    def wait_for_job() -> None:
        try:
            result["value"] = client.blmove("jobs", "working", 30, "LEFT", "RIGHT")
        except Exception as error:
            result["error"] = error

    thread = threading.Thread(target=wait_for_job, daemon=True)
    thread.start()
    return thread


def test_blocked_blmove_survives_a_planned_failover(cluster: LoopbackCluster) -> None:
    client = ha_client(cluster)
    client.ping()
    result: dict[str, Any] = {}
    thread = _blmove_in_thread(client, result)
    time.sleep(0.3)
    old = cluster.master_addr()
    cluster.sentinel_failover()
    new = cluster.wait_for_master_change(old)
    admin_of(cluster, new).rpush("jobs", "job-1")
    thread.join(15)
    assert result == {"value": b"job-1"}


def test_blocked_blmove_on_a_frozen_master_is_interrupted_by_the_switch(cluster: LoopbackCluster) -> None:
    """SIGSTOP sends no TCP reset: only the +switch-master subscription can wake the blocked reader."""
    client = ha_client(cluster)
    client.ping()
    result: dict[str, Any] = {}
    thread = _blmove_in_thread(client, result)
    time.sleep(0.3)
    frozen = cluster.master_node()
    old = frozen.addr
    cluster.freeze(frozen)
    try:
        new = cluster.wait_for_master_change(old)
        admin_of(cluster, new).rpush("jobs", "job-2")
        thread.join(10)
    finally:
        cluster.thaw(frozen)
    assert result == {"value": b"job-2"}


def test_unsafe_command_in_flight_on_a_frozen_master_is_reported_not_repeated(cluster: LoopbackCluster) -> None:
    client = ha_client(cluster, socket_timeout_s=0.5, retry_deadline_s=15)
    client.set("counter", 0)
    frozen = cluster.master_node()
    cluster.freeze(frozen)
    try:
        with pytest.raises(redis_ha.CommandOutcomeUnknown, match=r"INCRBY was sent to .* may or may not have run"):
            client.incr("counter")
        # An idempotent command in the same situation is retried onto the new master.
        assert client.set("after", "ok")
    finally:
        cluster.thaw(frozen)
    assert client.master_address != frozen.addr


def test_wrong_password_fails_at_once_without_a_retry_storm(cluster: LoopbackCluster) -> None:
    master = admin_of(cluster, cluster.master_addr())
    before = int(master.info("stats")["total_connections_received"])
    client = ha_client(cluster, password="not-the-password")
    with pytest.raises(redis_ha.AuthError, match=r"Redis refused user 'app'.*REDIS_PASSWORD"):
        client.set("k", "v")
    after = int(master.info("stats")["total_connections_received"])
    assert after - before <= 2  # our one attempt and the INFO connection itself


def test_wrong_sentinel_password_names_the_sentinel_settings(cluster: LoopbackCluster) -> None:
    client = ha_client(cluster, sentinel_password="wrong")
    with pytest.raises(redis_ha.AuthError, match="REDIS_SENTINEL_PASSWORD"):
        client.ping()


def test_every_sentinel_down_past_the_deadline_raises_redis_unavailable(cluster: LoopbackCluster) -> None:
    cluster.stop_all_sentinels()
    client = ha_client(cluster, retry_deadline_s=1.5)
    with pytest.raises(redis_ha.RedisUnavailable) as info:
        client.set("k", "v")
    error = info.value
    assert isinstance(error, redis.ConnectionError)  # code catching redis-py errors keeps working
    assert "retry deadline" in str(error)
    assert all(f"sentinel 127.0.0.1:{port}" in str(error) for _, port in cluster.sentinel_addrs)
    assert len(error.attempts) > 1


def test_replica_client_reads_from_a_replica(cluster: LoopbackCluster) -> None:
    writer = ha_client(cluster)
    pipe = writer.durable_pipeline(replicas=2, timeout_ms=2000)
    pipe.set("shared", "value")
    pipe.execute()
    reader = redis_ha.connect(env=cluster.env(), role="replica")
    assert reader.get("shared") == b"value"
    assert reader.execute_command("ROLE")[0] == b"slave"
    with pytest.raises(redis.ReadOnlyError):
        reader.set("shared", "nope")


def _child_writes(client: redis_ha.HARedis, key: str) -> None:
    client.set(key, str(os.getpid()))


def test_client_is_safe_across_fork_and_in_spawned_processes(cluster: LoopbackCluster) -> None:
    client = ha_client(cluster)
    client.set("parent", "1")
    for method in ("fork", "spawn"):
        ctx: Any = multiprocessing.get_context(method)
        child = ctx.Process(target=_child_writes, args=(client, f"child-{method}"))
        child.start()
        child.join(30)
        assert child.exitcode == 0, method
        assert client.get(f"child-{method}") == str(child.pid).encode()
    assert client.get("parent") == b"1"


def test_replica_promoted_out_of_the_lost_masters_stream_is_used_before_sentinel_says_so(
    cluster: LoopbackCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """With two of three sentinels gone no failover can happen, so Sentinel keeps naming the dead
    master. Promoting a replica by hand is what Sentinel's leader does in a failover; the client
    recognises it by its replication history and writes there."""
    client = ha_client(cluster, retry_deadline_s=10)
    client.set("before", "1")
    cluster.kill_sentinel(1)
    cluster.kill_sentinel(2)
    replica = cluster.replica_nodes()[0]
    old = cluster.kill_master()
    admin_of(cluster, replica.addr).execute_command("REPLICAOF", "NO", "ONE")
    with caplog.at_level(logging.WARNING, logger="redis_ha"):
        assert client.set("after", "2")
    assert client.master_address == replica.addr
    assert client.get("before") == b"1"
    still_named: Any = cluster.sentinel_client(0).execute_command(
        "SENTINEL", "GET-MASTER-ADDR-BY-NAME", cluster.master_name
    )
    assert int(still_named[1]) == old[1]  # Sentinel never moved: the client found the replica itself
    assert any("has taken over" in r.getMessage() for r in caplog.records)


def test_write_on_a_master_demoted_under_a_pooled_connection_goes_to_the_new_master(
    cluster: LoopbackCluster,
) -> None:
    """The pooled connection still points at the old master, which now answers READONLY (redis-py
    raises ReadOnlyError, without the code): the write is retried where it belongs."""
    client = ha_client(cluster, retry_deadline_s=10)
    client.set("before", "1")
    cluster.kill_sentinel(1)
    cluster.kill_sentinel(2)  # no failover can happen: Sentinel keeps naming the old master
    old = cluster.master_addr()
    replica = cluster.replica_nodes()[0]
    admin_of(cluster, replica.addr).execute_command("REPLICAOF", "NO", "ONE")
    admin_of(cluster, old).execute_command("REPLICAOF", *replica.addr)
    assert client.set("after", "2")
    assert client.master_address == replica.addr
    assert admin_of(cluster, replica.addr).get("after") == "2"


def test_app_user_without_role_permission_is_told_what_to_grant(cluster: LoopbackCluster) -> None:
    admin = admin_of(cluster, cluster.master_addr())
    admin.execute_command("ACL", "SETUSER", "norole", "on", ">norole-password-123", "~*", "+@all", "-role")
    client = ha_client(cluster, username="norole", password="norole-password-123")
    with pytest.raises(redis_ha.ConfigError, match=r"user 'norole' may not run ROLE .* grant it \+role"):
        client.ping()


def test_a_stream_read_blocking_longer_than_the_socket_timeout_returns_normally(cluster: LoopbackCluster) -> None:
    client = ha_client(cluster, retry_deadline_s=8)
    started = time.monotonic()
    assert not client.xread({"events": "$"}, block=6000)  # nothing arrives: an empty reply, not an error
    waited = time.monotonic() - started
    assert 5.5 < waited < client.settings.socket_timeout_s + 6.0


def test_closed_clients_leave_no_threads_or_sentinel_connections_behind(cluster: LoopbackCluster) -> None:
    sentinels = [cluster.sentinel_client(index) for index in range(len(cluster.sentinels))]

    def sentinel_connections() -> int:
        """The app user's connections only: the Sentinels' links to each other come and go on their own."""
        user = cluster.sentinel_app_user
        return sum(1 for sentinel in sentinels for link in sentinel.client_list() if link.get("user") == user)

    baseline_threads, baseline_connections = threading.active_count(), sentinel_connections()
    close_times: list[float] = []
    for index in range(10):
        client = ha_client(cluster)
        client.ping()  # connects: starts the failover watchers, asks a sentinel for the master
        wait_for(lambda: sentinel_connections() >= baseline_connections + 3, 10, "the client's sentinel connections")
        started = time.monotonic()
        if index % 2:
            with client:
                pass
        else:
            client.close()
        close_times.append(time.monotonic() - started)

    wait_for(lambda: threading.active_count() == baseline_threads, 2, "the clients' threads to end")
    wait_for(lambda: sentinel_connections() == baseline_connections, 2, "the clients' sentinel connections to close")
    assert max(close_times) < 0.3, close_times
    for sentinel in sentinels:
        sentinel.close()


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout_s:g}s waiting for {what}")
        time.sleep(0.05)


@pytest.mark.integration
def test_a_watched_transaction_whose_node_turned_replica_is_retried_as_a_watch_failure(
    cluster: LoopbackCluster,
) -> None:
    """The node became a replica between WATCH and EXEC (a planned failover): the server discards
    the transaction (EXECABORT), so nothing ran, and it is reported as WatchError, which every WATCH
    loop (RQ's handle_job_success, redis-py's transaction()) answers by starting over; the next
    attempt runs on the new master. Raising READONLY instead made RQ count a finished job as failed
    and run it again."""
    client = ha_client(cluster)
    client.set("counter", 0)
    old = cluster.master_addr()
    attempts = 0
    with client.pipeline() as pipe:
        while True:
            attempts += 1
            try:
                pipe.watch("counter")
                value = int(pipe.get("counter") or 0)
                if attempts == 1:
                    planned_failover(cluster)  # the watched connection still points at the old master
                pipe.multi()
                pipe.set("counter", value + 1)
                pipe.execute()
                break
            except redis.WatchError:
                assert attempts < 5, "the transaction kept failing"
                continue
    assert attempts == 2
    assert client.get("counter") == b"1"
    assert client.master_address != old
    cluster.wait_for_master_change(old)  # Sentinel announces it a moment after the promoted replica
