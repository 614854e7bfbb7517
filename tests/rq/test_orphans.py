"""The orphaned-job decisions, without sockets."""

from __future__ import annotations

from redis_ha.rq.orphans import DEAD_WORKER_GRACE_S, STUCK_GRACE_S, ExecutionView, orphan_reason, stuck_reason


def view(**changes: object) -> ExecutionView:
    base: dict[str, object] = {
        "queue": "default",
        "job_id": "j1",
        "execution_id": "e1",
        "job_status": "started",
        "worker_name": "me",
        "worker_alive": True,
        "heartbeat_age_s": 1.0,
    }
    base.update(changes)
    return ExecutionView(**base)  # type: ignore[arg-type]


def test_an_execution_this_worker_runs_is_left_alone() -> None:
    assert orphan_reason(view(), me="me", running=frozenset({"e1"})) is None


def test_an_execution_naming_this_worker_that_it_does_not_run_is_orphaned_at_once() -> None:
    reason = orphan_reason(view(), me="me", running=frozenset({"e2"}))
    assert reason is not None and "lost in a failover" in reason


def test_a_finished_job_is_never_orphaned() -> None:
    assert orphan_reason(view(job_status="finished"), me="me", running=frozenset()) is None


def test_another_live_workers_execution_is_left_alone() -> None:
    assert orphan_reason(view(worker_name="other"), me="me", running=frozenset()) is None


def test_a_gone_workers_execution_is_orphaned_only_after_the_grace_period() -> None:
    fresh = view(worker_name="other", worker_alive=False, heartbeat_age_s=DEAD_WORKER_GRACE_S - 1)
    stale = view(worker_name="other", worker_alive=False, heartbeat_age_s=DEAD_WORKER_GRACE_S + 1)
    assert orphan_reason(fresh, me="me", running=frozenset()) is None
    assert "no longer runs" in (orphan_reason(stale, me="me", running=frozenset()) or "")


def test_a_queued_job_stuck_in_the_intermediate_list_goes_back_after_the_grace_period() -> None:
    assert stuck_reason("j1", "default", "queued", STUCK_GRACE_S - 1) is None
    assert stuck_reason("j1", "default", "started", STUCK_GRACE_S + 1) is None
    assert "never started" in (stuck_reason("j1", "default", "queued", STUCK_GRACE_S + 1) or "")


def test_a_queued_job_held_by_a_live_worker_is_never_put_back_however_long_it_waits() -> None:
    for seen_for_s in (STUCK_GRACE_S + 1, 3600.0):
        assert stuck_reason("j1", "default", "queued", seen_for_s, holder="other", holder_alive=True, me="me") is None


def test_a_queued_job_held_by_a_gone_worker_is_put_back_at_once() -> None:
    reason = stuck_reason("j1", "default", "queued", 0.0, holder="other", holder_alive=False, me="me")
    assert "worker other, which is gone" in (reason or "")


def test_a_queued_job_this_worker_holds_is_left_alone_and_one_it_let_go_of_is_put_back() -> None:
    held = frozenset({"j1"})
    assert stuck_reason("j1", "default", "queued", 3600.0, holder="me", me="me", held=held) is None
    reason = stuck_reason("j1", "default", "queued", 0.0, holder="me", me="me", held=frozenset())
    assert "let go of it without starting it" in (reason or "")
