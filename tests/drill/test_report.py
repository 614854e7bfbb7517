"""The drill report's pure functions: what users felt, and each reason an SLO verdict can give."""

from __future__ import annotations

import re

import pytest
from redis_ha.drill import report
from redis_ha.drill.alerts import first_delivery, first_firing
from redis_ha.drill.records import Ack, DrillLog, Event, Execution, Probe, ProducerError, TrafficRecord

T0 = 1_000.0


def traffic(**changes: object) -> TrafficRecord:
    """Ten jobs acknowledged and run once each, writes every 0.1 s, no error: a clean drill."""
    record = TrafficRecord(started=T0, ended=T0 + 20, rate=10, queue="q", probe_interval_s=0.1)
    record.acks = [Ack(f"j{i}", T0 + i, T0 + i + 0.01) for i in range(10)]
    record.executions = [Execution(f"j{i}", T0 + i + 0.1, 1) for i in range(10)]
    record.probes = [Probe(T0 + i / 10, T0 + i / 10 + 0.001, True, "m:1") for i in range(200)]
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def drill_log(**changes: object) -> DrillLog:
    log = DrillLog(kind="kill-master", env="test", backend="unit", down_after_ms=1500)
    log.events = [
        Event(T0 + 5, report.BREAK),
        Event(T0 + 7, report.FAILOVER_DONE),
        Event(T0 + 9, report.RESTORED, "started redis-0 again"),
        Event(T0 + 11, report.RECOVERED),
    ]
    for key, value in changes.items():
        setattr(log, key, value)
    return log


def verdict_of(record: TrafficRecord, log: DrillLog | None = None, slo: report.Slo | None = None) -> list[str]:
    return report.verdict(report.summarize(record, log or drill_log()), slo or report.Slo())


def test_a_clean_drill_meets_the_slo_and_its_table_says_so() -> None:
    summary = report.summarize(traffic(), drill_log())
    assert verdict_of(traffic()) == []
    assert (summary.acknowledged, summary.finished, summary.lost, summary.duplicated) == (10, 10, 0, 0)
    assert summary.failover_s == 2.0
    assert summary.recovered_s == 6.0
    text = report.table(summary, report.Slo(), [])
    assert "SLO met." in text
    assert re.search(r"^jobs lost +0 \(SLO <= 0\)$", text, re.MULTILINE)


def test_a_lost_acknowledged_job_misses_the_slo_naming_the_job() -> None:
    record = traffic(executions=[Execution(f"j{i}", T0 + i, 1) for i in range(9)])
    (reason,) = verdict_of(record)
    assert reason.startswith("1 acknowledged job(s) never ran (SLO: at most 0 lost): j9")


def test_errors_surfaced_to_producers_miss_the_slo_with_their_type_and_first_message() -> None:
    record = traffic(errors=[ProducerError(T0 + 6, "x", "NotDurable: only 0 of 2 replicas confirmed it")])
    (reason,) = verdict_of(record)
    assert "1 error(s) surfaced to producers (SLO: at most 0): 1 NotDurable" in reason
    assert "only 0 of 2 replicas" in reason


def test_a_write_gap_longer_than_down_after_plus_two_seconds_misses_the_slo() -> None:
    probes = [p for p in traffic().probes if not T0 + 5 < p.done < T0 + 9]  # 4.1 s without a write
    probes.append(Probe(T0 + 6, T0 + 7, False, "", "TimeoutError: frozen"))
    (reason,) = verdict_of(traffic(probes=probes))
    assert reason.startswith("no write got through for 4.1 s (SLO: at most 3.5 s,")
    assert "down-after-milliseconds 1500 ms + 2 s" in reason


def test_a_configured_write_gap_limit_replaces_the_default() -> None:
    probes = [p for p in traffic().probes if not T0 + 5 < p.done < T0 + 9]
    assert verdict_of(traffic(probes=probes), slo=report.Slo(max_write_gap_s=5.0)) == []


def test_a_job_run_twice_is_counted_as_duplicated() -> None:
    record = traffic()
    record.executions.append(Execution("j3", T0 + 12, 2))
    summary = report.summarize(record, drill_log())
    assert summary.duplicated == 1
    assert verdict_of(record) == []  # duplicates are reported, not an SLO item: jobs must be idempotent


def test_a_failed_restore_is_a_reason_quoting_the_failure() -> None:
    log = drill_log()
    log.events = [e for e in log.events if e.name != report.RESTORED]
    log.events.append(Event(T0 + 9, report.RESTORE_FAILED, "RuntimeError: ssh: connection refused"))
    assert "the drill could not restore what it broke: RuntimeError: ssh: connection refused" in verdict_of(
        traffic(), log
    )


def test_a_cluster_never_seen_healthy_again_is_a_reason() -> None:
    log = drill_log()
    log.events = [e for e in log.events if e.name != report.RECOVERED]
    assert verdict_of(traffic(), log) == [
        "the cluster was not seen healthy again (old master a replica in sync, quorum ok)"
    ]


def test_no_acknowledged_job_before_the_break_is_a_reason() -> None:
    record = traffic(acks=[Ack(f"j{i}", T0 + 6 + i, T0 + 6 + i) for i in range(3)])
    record.executions = [Execution(f"j{i}", T0 + 7 + i, 1) for i in range(3)]
    assert verdict_of(record) == ["no job was acknowledged before the break, so the drill measured nothing"]


def test_an_interrupted_or_failed_drill_says_so() -> None:
    log = drill_log()
    log.events += [Event(T0 + 8, report.INTERRUPTED, "SIGTERM"), Event(T0 + 8, report.BREAK_FAILED, "boom")]
    reasons = verdict_of(traffic(), log)
    assert "the drill was interrupted (SIGTERM)" in reasons
    assert "the break itself failed: boom" in reasons


def test_write_gaps_span_from_the_last_success_to_the_next() -> None:
    probes = [
        Probe(0.0, 0.1, True),
        Probe(0.2, 1.2, False),
        Probe(1.3, 2.3, False),
        Probe(2.4, 2.5, True),
        Probe(2.6, 2.7, True),
    ]
    assert report.write_gaps(probes, threshold_s=0.5) == [(0.1, 2.5)]
    assert report.write_gaps([Probe(0.0, 0.1, True), Probe(0.2, 3.0, False)], 0.5) == [(0.1, 3.0)]


def test_throughput_is_counted_per_second_since_the_traffic_started() -> None:
    series = report.throughput(traffic(errors=[ProducerError(T0 + 2.5, "x", "E: e")]))
    assert series[0] == (0, 1, 1, 0)
    assert series[2] == (2, 1, 1, 1)
    assert len(series) == 20


def test_the_json_report_carries_the_verdict_and_the_slo_applied() -> None:
    summary = report.summarize(traffic(), drill_log())
    data = report.to_json(summary, report.Slo(), [])
    assert data["slo_met"] is True
    assert data["slo"]["max_write_gap_s"] == 3.5
    assert data["summary"]["events"][0]["name"] == report.BREAK


def test_an_alert_still_firing_from_an_earlier_failover_is_not_taken_for_this_one() -> None:
    def series(instance: str, *runs: tuple[int, int]) -> dict[str, object]:
        """One ALERTS series sampled every second during each (first, last) run."""
        return {"metric": {"instance": instance}, "values": [[t, "1"] for a, b in runs for t in range(a, b + 1)]}

    reply = {"status": "success", "data": {"result": [series("a", (100, 160)), series("b", (150, 151))]}}
    assert first_firing(reply) == 100.0
    assert first_firing(reply, after=120.0) == 150.0
    assert first_firing({"status": "success", "data": {"result": [series("a", (100, 200))]}}, after=120.0) is None


def test_the_same_node_promoted_again_fires_anew_even_if_its_last_alert_was_recent() -> None:
    # Promoted at 100 (fired until 160), a replica again, promoted again: firing from 230 on.
    reply = {"status": "success", "data": {"result": [{"metric": {"instance": "a"},
             "values": [[t, "1"] for t in [*range(100, 161), *range(230, 260)]]}]}}  # fmt: skip
    assert first_firing(reply, after=150.0) == 230.0
    assert first_firing({"status": "error"}, after=150.0) is None


def notification(received: float, *alerts: tuple[str, str, str]) -> dict[str, object]:
    """What the lab's webhook receiver lists: (alertname, status, startsAt) per alert in the body."""
    body = {"alerts": [{"labels": {"alertname": n}, "status": st, "startsAt": at} for n, st, at in alerts]}
    return {"received": received, "notification": body}


def test_delivery_is_the_first_notification_of_a_firing_that_began_after_the_break() -> None:
    # Break at 1000 = 1970-01-01T00:16:40Z. A repeat of an earlier failover's alert, another alert,
    # a resolved one, then this failover's alert (nanosecond startsAt, as Alertmanager sends it).
    records = [
        notification(1010.0, ("RedisFailoverHappened", "firing", "1970-01-01T00:10:00.5Z")),
        notification(1020.0, ("RedisDown", "firing", "1970-01-01T00:16:45Z")),
        notification(1030.0, ("RedisFailoverHappened", "resolved", "1970-01-01T00:16:50Z")),
        notification(1052.5, ("RedisFailoverHappened", "firing", "1970-01-01T00:17:25.123456789Z")),
        notification(1090.0, ("RedisFailoverHappened", "firing", "1970-01-01T00:17:25.123456789+00:00")),
    ]
    assert first_delivery(records, "RedisFailoverHappened", after=T0) == 1052.5
    assert first_delivery(records[:3], "RedisFailoverHappened", after=T0) is None
    assert first_delivery([notification(1052.5, ("RedisFailoverHappened", "firing", "soon"))], "x", T0) is None


def test_the_report_says_when_the_alert_was_delivered_or_why_it_cannot() -> None:
    log = drill_log()
    log.events += [Event(T0 + 50, report.ALERT_FIRING), Event(T0 + 57.25, report.ALERT_DELIVERED)]
    rows = dict(report.rows(report.summarize(traffic(), log), report.Slo()))
    assert rows["alert fired"] == "45.0 s after the break"
    assert rows["alert delivered"] == "52.2 s after the break"
    unknown = drill_log(delivery_note="unknown: no webhook receiver records to read")
    rows = dict(report.rows(report.summarize(traffic(), unknown), report.Slo()))
    assert rows["alert delivered"] == "unknown: no webhook receiver records to read"


def sentinel(at: float, channel: str, data: str, where: str = "10.0.0.2:26379") -> Event:
    return Event(at, channel, f"{where} {data}")


PARTITION_HEARD = [
    sentinel(T0 + 7.9, "+sdown", "sentinel abc 10.0.0.1 26379 @ mymaster 10.0.0.1 6379"),  # not the master
    sentinel(T0 + 8.4, "+sdown", "master mymaster 10.0.0.1 6379", "10.0.0.3:26379"),
    sentinel(T0 + 9.0, "+sdown", "master mymaster 10.0.0.1 6379"),
    sentinel(T0 + 9.1, "+odown", "master mymaster 10.0.0.1 6379 #quorum 2/2"),
    sentinel(
        T0 + 9.3, "+failover-state-send-slaveof-noone", "slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster 10.0.0.1 6379"
    ),
    sentinel(T0 + 10.2, "+promoted-slave", "slave 10.0.0.3:6379 10.0.0.3 6379 @ mymaster 10.0.0.1 6379"),
    sentinel(T0 + 10.3, "+switch-master", "mymaster 10.0.0.1 6379 10.0.0.3 6379", "10.0.0.3:26379"),
    sentinel(T0 + 11.2, "+switch-master", "mymaster 10.0.0.1 6379 10.0.0.3 6379"),
]


def test_the_failover_steps_split_the_write_gap_from_its_last_write() -> None:
    probes = [p for p in traffic().probes if not T0 + 5.01 < p.done < T0 + 10.5]  # last write 5.0, next 10.5
    log = drill_log(sentinel_events=PARTITION_HEARD)
    summary = report.summarize(traffic(probes=probes), log)
    assert summary.steps_from == "the last write"
    steps = dict(summary.failover_steps)
    assert list(steps) == ["sdown", "odown", "promotion sent", "promotion seen", "switch-master", "first write"]
    assert steps["sdown"] == pytest.approx(3.4, abs=0.01)  # the first Sentinel to see the master down
    assert steps["promotion sent"] == pytest.approx(4.3, abs=0.01)
    assert steps["switch-master"] == pytest.approx(5.3, abs=0.01)  # the first one heard
    assert steps["first write"] == pytest.approx(5.5, abs=0.01)
    text = report.table(summary, report.Slo(), [])
    assert re.search(
        r"^failover steps \(s after the last write\) +sdown 3\.4, odown 4\.1, promotion sent 4\.3, ", text, re.M
    )


def test_without_a_write_gap_the_steps_count_from_the_break_and_name_no_first_write() -> None:
    log = drill_log(sentinel_events=[sentinel(T0 + 6.5, "+sdown", "master mymaster 10.0.0.1 6379")])
    summary = report.summarize(traffic(), log)
    assert summary.steps_from == "the break"
    assert summary.failover_steps == (("sdown", 1.5),)
    assert report.summarize(traffic(), drill_log()).failover_steps == ()


def test_where_the_traffic_ran_is_in_the_table_and_a_lost_traffic_is_a_reason() -> None:
    log = drill_log(traffic_on="app1")
    log.events.append(Event(T0 + 15, report.TRAFFIC_LOST, "RuntimeError: no records came back from app1"))
    summary = report.summarize(traffic(), log)
    assert re.search(r"^traffic ran +20\.0 s on app1$", report.table(summary, report.Slo(), []), re.M)
    assert report.verdict(summary, report.Slo()) == [
        "the traffic on app1 could not be stopped or collected: RuntimeError: no records came back from app1"
    ]
