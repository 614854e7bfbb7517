"""A drill from start to finish: refuse unless safe, start traffic, break, ALWAYS restore, report.

``run_drill()`` is what ``redis-ha drill run`` calls (with ``HostsBackend``) and what the tests
call (with the loopback backend). Whatever happens after the break starts (an exception, a
timeout, SIGINT or SIGTERM) the backend's ``restore`` runs, with those signals held off until it
is done, and the drill says so. The verdict comes from ``report.verdict``; the exit status is
0 (SLO met), 1 (missed), 3 (refused to start).

The traffic runs beside the drill (``LocalTraffic``) or, with ``--traffic-on``, on an app host
(``hosts.AppHostTraffic``); either way its records end up in the results directory. A
``SentinelEar`` listens to every Sentinel meanwhile, for the failover's steps in the report.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import redis

from redis_ha.config import Address, Settings, format_address, load_settings
from redis_ha.drill import report, total_loss
from redis_ha.drill.alerts import FAILOVER_ALERT, alert_delivered_at, alert_firing_at
from redis_ha.drill.backend import Backend
from redis_ha.drill.kinds import Plan, choose_target, plan_for, recovery_problem
from redis_ha.drill.records import (
    CONTROLLER,
    EVENTS_FILE,
    READY_FILE,
    TRAFFIC_FILE,
    DrillLog,
    Event,
    TrafficRecord,
    write_json,
)
from redis_ha.drill.safety import confirmation_refusal, data_loss_refusal, health_refusal, target_refusal
from redis_ha.drill.sentinel_events import SentinelEar
from redis_ha.health import decide, observe
from redis_ha.sentinel import probe_client

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_SLO_MISSED = 1
EXIT_REFUSED = 3
POLL_S = 0.25
ALERT_POLL_S = 5.0
"""How often Prometheus and the webhook receiver are asked whether the alert fired and arrived."""
TRAFFIC_STOP_MARGIN_S = 30.0


@dataclass(frozen=True)
class DrillOptions:
    kind: str
    env: str
    out_dir: Path
    confirm: str | None = None
    rate: float = 20.0
    workers: int = 2
    warmup_s: float = 5.0
    hold_s: float = 5.0
    """How long the breakage lasts after the failover (or the break, for kinds without one), seconds."""
    settle_s: float = 5.0
    failover_timeout_s: float = 60.0
    recover_timeout_s: float = 120.0
    ready_timeout_s: float = 60.0
    drain_timeout_s: float = 60.0
    alert_wait_s: float = 120.0
    slo: report.Slo = field(default_factory=report.Slo)
    png: bool = True


class DrillInterrupted(BaseException):  # like KeyboardInterrupt: not an error of the drill
    """SIGINT or SIGTERM arrived; the drill restores and reports, then stops."""


@dataclass
class Outcome:
    code: int
    refusal: str | None = None
    summary: report.Summary | None = None
    reasons: list[str] = field(default_factory=list)
    table: str = ""
    out_dir: Path | None = None


def say(text: str) -> None:
    """Tell the operator (stdout) and the log the same sentence."""
    print(f"drill: {text}", flush=True)
    logger.debug(text)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into ``DrillInterrupted`` for the duration (main thread only)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise DrillInterrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[str]]:
    """Hold SIGINT and SIGTERM off (noting them) while something must finish, such as a restore."""
    pending: list[str] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        pending.append(signal.Signals(signum).name)
        print(f"drill: {pending[-1]} received while restoring; finishing the restore first.", flush=True)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield pending
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def traffic_arguments(options: DrillOptions, max_s: float) -> list[str]:
    """The ``redis-ha drill traffic`` options of a drill, wherever it runs (all but ``--out`` and ``--queue``). Pure."""
    return [
        "--rate", f"{options.rate:g}", "--workers", str(options.workers),
        "--duration", f"{max_s:.0f}", "--drain-timeout", f"{options.drain_timeout_s:g}",
    ]  # fmt: skip


class TrafficRunner(Protocol):
    """Runs the drill's traffic somewhere and leaves its records (``traffic.json`` ...) in the results directory."""

    where: str
    """``controller`` or the inventory name of the app host it runs on."""

    def start(self, queue: str, max_s: float) -> None:
        """Start the traffic and return once jobs flow (one acknowledged and run); raise if they do not."""
        ...

    def stop(self) -> None:
        """Stop producing, let the queued jobs run (bounded), and bring the records into the results directory."""
        ...


class LocalTraffic:
    """``redis-ha drill traffic`` as a child process of the drill, on this machine."""

    where = CONTROLLER

    def __init__(self, options: DrillOptions, client_env: dict[str, str]) -> None:
        self.options = options
        self.client_env = client_env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, queue: str, max_s: float) -> None:
        out = self.options.out_dir
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RQ_"))}
        env |= self.client_env
        argv = [sys.executable, "-m", "redis_ha.cli", "drill", "traffic", "--out", str(out), "--queue", queue]
        argv += traffic_arguments(self.options, max_s)
        with (out / "traffic.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        say(f"traffic started (pid {self.process.pid}, {self.options.rate:g} jobs/s, log {out / 'traffic.log'})")
        deadline = time.monotonic() + self.options.ready_timeout_s
        while not (out / READY_FILE).exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"the traffic generator exited with code {self.process.returncode}; see traffic.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no job was acknowledged and run within {self.options.ready_timeout_s:g} s")
            time.sleep(POLL_S)

    def stop(self) -> None:
        """SIGTERM the generator (it stops producing and drains), wait, insist if it hangs."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self.options.drain_timeout_s + TRAFFIC_STOP_MARGIN_S)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGTERM)  # a second SIGTERM skips the rest of the drain
            try:
                process.wait(timeout=TRAFFIC_STOP_MARGIN_S)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


class Drill:
    """One run. Holds the events it records; each step is a method so a test can watch it."""

    def __init__(self, backend: Backend, options: DrillOptions, traffic: TrafficRunner | None = None) -> None:
        self.backend = backend
        self.options = options
        self.plan: Plan = plan_for(options.kind)
        self.settings: Settings = load_settings(env=backend.client_env())
        self.traffic: TrafficRunner = traffic or LocalTraffic(options, backend.client_env())
        self.log = DrillLog(kind=options.kind, env=options.env, backend=backend.name, traffic_on=self.traffic.where)
        self.ear = SentinelEar(self.settings)

    def event(self, name: str, detail: str = "") -> None:
        self.log.events.append(Event(time.time(), name, detail))
        if detail:
            say(f"{name}: {detail}")

    # Observing.

    def observe(self) -> tuple[Any, str, str]:
        obs = observe(self.settings)
        state, reason = decide(obs)
        return obs, state, reason

    def down_after_ms(self) -> int | None:
        for addr in self.settings.sentinels:
            try:
                with probe_client(self.settings, addr, sentinel=True) as client:
                    reply: Any = client.execute_command("SENTINEL", "MASTER", self.settings.master_name)
            except redis.RedisError:
                continue
            pairs = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=False))
            value = pairs.get("down-after-milliseconds", pairs.get(b"down-after-milliseconds"))
            if value is not None:
                return int(value)
        return None

    def _wait(self, problem: Callable[[], str | None], timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        last = problem()
        while last is not None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            last = problem()
        return last

    # Breaking and restoring.

    @contextlib.contextmanager
    def broken(self, target: Address | None) -> Iterator[None]:
        """Break on entry; restore on exit, whatever happened inside, with signals held off."""
        try:
            self.event(report.BREAK, f"{self.plan.description} ({format_address(target) if target else 'all nodes'})")
            detail = self.backend.break_(self.plan, target)
            if self.plan.target != "cluster":
                # One action, the backend's last step: it took effect now, not when the call started
                # (an Ansible run spends seconds connecting first). A rolling restart breaks all along.
                self.log.events.append(Event(time.time(), report.BROKEN, detail))
            say(f"broke: {detail}")
            yield
        finally:
            with signals_deferred():
                self.event(report.RESTORE, self.plan.undo)
                try:
                    detail = self.backend.restore(self.plan, target)
                except Exception as exc:
                    self.event(report.RESTORE_FAILED, f"{type(exc).__name__}: {exc}")
                    say("RESTORE FAILED: the cluster is still broken; fix it by hand (see above).")
                else:
                    self.log.events.append(Event(time.time(), report.RESTORED, detail))
                    say(f"restored what it broke: {detail}")

    def take_backup(self) -> None:
        """The backup a total loss is restored from; the jobs acknowledged before it must all come back."""
        self.event(total_loss.BACKUP_START, "taking a backup from an in-sync replica")
        detail = self.backend.backup()
        self.event(total_loss.BACKUP_DONE, detail)

    def wait_failover(self, old: Address | None) -> None:
        def problem() -> str | None:
            try:
                obs = observe(self.settings)
            except redis.RedisError as exc:
                return str(exc)
            named = {s.master for s in obs.sentinels if s.reachable and s.master is not None}
            majority = len(obs.sentinels) // 2 + 1
            votes = sum(1 for s in obs.sentinels if s.reachable and s.master is not None and s.master != old)
            if votes >= majority and len(named - {old}) == 1:
                return None
            return f"sentinels name {', '.join(format_address(a) for a in named) or 'nothing'}"

        left = self._wait(problem, self.options.failover_timeout_s)
        if left is not None:
            raise RuntimeError(f"no failover within {self.options.failover_timeout_s:g} s: {left}")
        obs = observe(self.settings)
        self.event(report.FAILOVER_DONE, f"sentinels agree on the new master {format_address(obs.master)}")

    def wait_recovered(self, target: Address | None) -> None:
        def problem() -> str | None:
            obs, state, reason = self.observe()
            return recovery_problem(self.plan, target, obs, state, reason)

        left = self._wait(problem, self.options.recover_timeout_s)
        if left is None:
            self.event(report.RECOVERED, "the cluster is healthy again")
        else:
            self.event(report.NOT_RECOVERED, f"after {self.options.recover_timeout_s:g} s: {left}")

    def read_alert(self, start: float) -> None:
        """When the failover alert fired (Prometheus), then when it reached the webhook receiver."""
        url, why = self.backend.prometheus_url()
        if url is None:
            self.log.alert_note = f"skipped: {why}"
            self.log.delivery_note = "skipped: no Prometheus, so no alert to deliver"
            return
        if not self.plan.expects_failover:
            self.log.alert_note = self.log.delivery_note = f"not expected: {self.options.kind} causes no failover"
            return
        # Counted from the break; an alert of an earlier failover that is still firing does not count.
        broke = max((e.at for e in self.log.events if e.name in (report.BREAK, report.BROKEN)), default=start)
        deadline = time.monotonic() + self.options.alert_wait_s

        def fired() -> float | None:
            return alert_firing_at(url, FAILOVER_ALERT, broke - 60.0, time.time(), after=broke)

        at, problem = self._poll(fired, deadline, f"Prometheus at {url}")
        if at is None:
            self.log.alert_note = problem
            self.log.delivery_note = "not delivered: the alert did not fire"
            return
        self.log.events.append(Event(at, report.ALERT_FIRING, FAILOVER_ALERT))
        say(f"{FAILOVER_ALERT} fired {at - broke:.1f} s after the break")
        self.read_delivery(broke, deadline)

    def read_delivery(self, broke: float, deadline: float) -> None:
        receiver, why = self.backend.alert_receiver_url()
        if receiver is None:
            self.log.delivery_note = f"unknown: {why}"
            return
        at, problem = self._poll(
            lambda: alert_delivered_at(receiver, FAILOVER_ALERT, broke), deadline, f"the webhook receiver at {receiver}"
        )
        if at is None:
            self.log.delivery_note = problem
            return
        self.log.events.append(Event(at, report.ALERT_DELIVERED, f"{FAILOVER_ALERT} at {receiver}"))
        say(f"{FAILOVER_ALERT} delivered {at - broke:.1f} s after the break")

    def _poll(self, read: Callable[[], float | None], deadline: float, source: str) -> tuple[float | None, str]:
        """``read()`` every few seconds until it returns a time or ``deadline`` passes: (time, why not)."""
        while True:
            try:
                at = read()
            except (OSError, ValueError) as exc:
                return None, f"{source} could not be read: {exc}"
            if at is not None:
                return at, ""
            if time.monotonic() > deadline:
                return None, f"not seen at {source} within {self.options.alert_wait_s:g} s"
            time.sleep(ALERT_POLL_S)

    # The run.

    def preflight(self) -> tuple[str | None, Address | None]:
        refusal = confirmation_refusal(self.options.env, self.options.confirm) or data_loss_refusal(
            self.plan, self.options.env, self.options.confirm
        )
        if refusal:
            return refusal, None
        obs, state, reason = self.observe()
        refusal = health_refusal(state, reason)  # type: ignore[arg-type]
        if refusal:
            return refusal, None
        target, why = choose_target(self.plan, obs)
        refusal = target_refusal(self.plan, target is not None, why)
        if refusal:
            return refusal, None
        say(f"cluster healthy: {reason}")
        say(f"target: {why}")
        return None, target

    def run(self) -> Outcome:
        out = self.options.out_dir
        out.mkdir(parents=True, exist_ok=True)
        refusal, target = self.preflight()
        if refusal:
            say(refusal)
            return Outcome(EXIT_REFUSED, refusal=refusal)
        self.log.down_after_ms = self.down_after_ms()
        opts = self.options
        budget = opts.warmup_s + opts.failover_timeout_s + opts.hold_s + opts.recover_timeout_s + opts.settle_s + 600
        start = time.time()
        self.ear.start()
        with signals_raise():
            try:
                self.traffic.start(f"drill-{uuid.uuid4().hex[:8]}", budget)
                time.sleep(opts.warmup_s)
                if self.plan.action == "wipe":
                    self.take_backup()
                with self.broken(target):
                    if self.plan.expects_failover:
                        self.wait_failover(target)
                    time.sleep(opts.hold_s)
                self.wait_recovered(target)
                time.sleep(opts.settle_s)
            except DrillInterrupted as exc:
                self.event(report.INTERRUPTED, f"{exc}; restored, stopping the traffic and reporting")
            except Exception as exc:
                self.event(report.BREAK_FAILED, f"{type(exc).__name__}: {exc}")
            finally:
                with signals_deferred():
                    say("stopping the traffic and waiting for the queued jobs to run")
                    try:
                        self.traffic.stop()
                    except Exception as exc:
                        self.event(report.TRAFFIC_LOST, f"{type(exc).__name__}: {exc}")
                    self.log.sentinel_events = self.ear.stop()
        self.read_alert(start)
        write_json(out / EVENTS_FILE, self.log.to_json())
        return render(out, opts.slo, png=opts.png)


def render(out: Path, slo: report.Slo, *, png: bool = True) -> Outcome:
    """Read the recorded files in ``out``, write report.txt, report.json (and timeline.png), print the table."""
    import json  # noqa: PLC0415

    log = DrillLog.from_json(json.loads((out / EVENTS_FILE).read_text()))
    traffic_path = out / TRAFFIC_FILE
    if traffic_path.exists():
        traffic = TrafficRecord.from_json(json.loads(traffic_path.read_text()))
    else:
        traffic = TrafficRecord(started=time.time(), ended=time.time(), rate=0, queue="-", probe_interval_s=0.1)
    summary = report.summarize(traffic, log)
    reasons = report.verdict(summary, slo)
    extra: list[tuple[str, str]] = []
    if log.kind == total_loss.KIND:
        # Writes after the backup are lost and producers see errors by design; judged on what came back.
        figures = total_loss.summarize(traffic, log)
        reasons, extra = total_loss.verdict(figures), total_loss.rows(figures)
    if not traffic_path.exists():
        reasons.insert(0, f"the traffic generator left no {TRAFFIC_FILE}; see traffic.log")
    text = report.table(summary, slo, reasons, extra)
    (out / "report.txt").write_text(text + "\n")
    write_json(out / "report.json", report.to_json(summary, slo, reasons))
    if png:
        from redis_ha.drill.timeline import render_png  # noqa: PLC0415 - matplotlib only here

        render_png(out / "timeline.png", traffic, summary, slo, reasons)
    print(text, flush=True)
    print(f"drill: report in {out}/report.txt, report.json" + (", timeline.png" if png else ""), flush=True)
    return Outcome(
        EXIT_OK if not reasons else EXIT_SLO_MISSED, summary=summary, reasons=reasons, table=text, out_dir=out
    )


def run_drill(backend: Backend, options: DrillOptions, traffic: TrafficRunner | None = None) -> Outcome:
    """Run one drill; the traffic runs beside it unless ``traffic`` says where else."""
    return Drill(backend, options, traffic).run()
