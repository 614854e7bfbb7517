"""RQ's and redis-py's own test suites, run once on a stock client and once through redis_ha.

Run from the repository root (about 10 minutes on 2 cores; nothing else needed but ``make venv``
and network access to PyPI)::

    .venv/bin/python -m tests.compat.upstream                 # both suites
    .venv/bin/python -m tests.compat.upstream --suite rq      # one of them

It downloads the released sdists of RQ and redis-py at the versions pinned in requirements.txt
(``pip download --no-binary :all: --no-deps``), unpacks them to a temporary directory, starts a
``LoopbackCluster`` (tests/support/cluster.py) and runs each suite's test modules twice, each in
its own pytest process with a per-test and a per-module timeout. The plugin
``tests/compat/redis_ha_upstream_plugin.py`` replaces each suite's single connection helper
(RQ: ``find_empty_redis_database`` and ``min_redis_version`` in tests/__init__.py; redis-py:
``_get_client`` in tests/conftest.py) by one that connects as the cluster's admin user:

* ``stock``: a plain ``redis.Redis`` at the master the Sentinels report;
* ``redis_ha``: ``redis_ha.connect()``, which finds that master through the Sentinels, with a
  5 s retry deadline (``REDIS_HA_UPSTREAM_RETRY_DEADLINE``): a test that breaks its connection on
  purpose then fails within the per-test timeout instead of being retried for 30 s.

Tests that open connections of their own (``Redis()`` at localhost:6379) fail or skip the same
way in both runs. redis-py is limited to its core modules (``REDIS_PY_MODULES``). For each suite
it prints the tests run, how many passed stock, how many passed through redis_ha, and every test
that passed stock but failed through redis_ha, with the reason where the difference is a design
choice of redis_ha (``KNOWN_DIFFERENCES``) or the first line of its error otherwise.

``--redis-ha-path DIR`` runs another copy of the client package (say, an older commit exported
with ``git archive``) in place of the installed one, to compare before and after a change.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.cluster import LoopbackCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = Path(__file__).resolve().parent
PLUGIN = "redis_ha_upstream_plugin"

PER_TEST_TIMEOUT_S = 30
"""pytest-timeout for one upstream test, seconds."""
PER_MODULE_TIMEOUT_S = 420
"""Wall-clock limit of one test module's pytest process, seconds; a module over it counts as failed."""
DOWNLOAD_TIMEOUT_S = 180
"""Limit of the ``pip download`` of both sdists, seconds."""
HEALTHY_TIMEOUT_S = 40.0
"""How long the cluster may take to be healthy again between two modules, seconds."""

REDIS_PY_MODULES = (
    "tests/test_commands.py",
    "tests/test_pipeline.py",
    "tests/test_pubsub.py",
    "tests/test_lock.py",
    "tests/test_scripting.py",
    "tests/test_sentinel.py",
)
"""redis-py's modules about a client of one standalone server (the rest: cluster, modules, asyncio)."""

KNOWN_DIFFERENCES: dict[str, str] = {
    r"tests/test_commands\.py::TestRedisCommands::test_client_kill_filter_by_user$": (
        "design: the test's new ACL user lacks +role, and redis_ha confirms ROLE on every new connection "
        "(ConfigError naming the grant)"
    ),
    r"tests/test_pubsub\.py::TestPubSubBlockingListen::": (
        "design: the client is built with retry=/retry_on_timeout=, refused because redis_ha's retry loop "
        "is the only one (it alone knows which commands may run twice)"
    ),
}
"""Test id (a regular expression matched from its start) -> why it fails through redis_ha on purpose."""

MODES = ("stock", "redis_ha")


@dataclass
class Suite:
    name: str
    package: str
    modules: tuple[str, ...] | None  # None: every tests/test_*.py
    results: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # mode -> id -> (outcome, msg)


def pinned_versions(requirements: Path = REPO_ROOT / "requirements.txt") -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line."""
    pins = {}
    for line in requirements.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s#]+)\s*(#.*)?", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def download_and_unpack(packages: list[str], workdir: Path) -> dict[str, Path]:
    """Released sdists of ``name==version`` specs, unpacked; ``name -> source directory``."""
    downloads = workdir / "sdists"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "-d", str(downloads), *packages],
        check=True,
        timeout=DOWNLOAD_TIMEOUT_S,
    )
    sources = {}
    for spec in packages:
        name, _, version = spec.partition("==")
        archive = next(downloads.glob(f"{name}-{version}.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(workdir, filter="data")
        sources[name] = workdir / f"{name}-{version}"
    return sources


def cluster_env(cluster: LoopbackCluster) -> dict[str, str]:
    host, port = cluster.master_addr()
    return {
        "REDIS_HA_UPSTREAM_MASTER": f"{host}:{port}",
        "REDIS_HA_UPSTREAM_USER": cluster.admin_user,
        "REDIS_HA_UPSTREAM_PASSWORD": cluster.admin_password,
        "REDIS_HA_UPSTREAM_SENTINELS": ",".join(f"{h}:{p}" for h, p in cluster.sentinel_addrs),
        "REDIS_HA_UPSTREAM_MASTER_NAME": cluster.master_name,
        "REDIS_HA_UPSTREAM_SENTINEL_USER": cluster.sentinel_app_user,
        "REDIS_HA_UPSTREAM_SENTINEL_PASSWORD": cluster.sentinel_app_password,
    }


def run_module(  # noqa: PLR0917 — one call site, every argument distinct
    suite: Suite, source: Path, module: str, mode: str, cluster: LoopbackCluster, workdir: Path, redis_ha_path: str
) -> dict[str, tuple[str, str]]:
    """One test module in its own pytest process; ``test id -> (outcome, first line of the error)``."""
    report = workdir / "reports" / f"{suite.name}-{mode}-{Path(module).stem}.xml"
    report.parent.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "RQ_"))}
    env |= cluster_env(cluster)
    env |= {"REDIS_HA_UPSTREAM_MODE": mode, "REDIS_HA_UPSTREAM_SUITE": suite.name}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PLUGIN_DIR), redis_ha_path) if p)
    argv = [
        sys.executable,
        "-m",
        "pytest",
        module,
        "-p",
        PLUGIN,
        "-p",
        "no:cacheprovider",
        "-v",
        "-o",
        "addopts=",
        f"--timeout={PER_TEST_TIMEOUT_S}",
        f"--junitxml={report}",
    ]
    if suite.name == "rq":
        argv += ["--strict-markers"]
    else:
        host, port = cluster.master_addr()
        argv.append(f"--redis-url=redis://{cluster.admin_user}:{cluster.admin_password}@{host}:{port}/0")
    log = report.with_suffix(".log")
    with log.open("wb") as out:
        # Its own session: on timeout the whole group goes, forked RQ workers included.
        process = subprocess.Popen(
            argv, cwd=source, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            process.wait(timeout=PER_MODULE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop_group(process)
            # No junit report: what the verbose log says, the test still running counted as failed.
            seen = parse_verbose_log(log)
            seen[f"{module}::(rest of module)"] = ("failed", f"module did not finish within {PER_MODULE_TIMEOUT_S} s")
            return seen
        finally:
            stop_group(process)  # workers a finished module left behind
    if not report.exists():
        return {f"{module}::(module)": ("failed", "pytest wrote no report (crashed)")}
    return parse_junit(report, module)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group ``process`` leads (it was started in a session of its own), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


_VERBOSE_LINE = re.compile(r"^(\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\b")


def parse_verbose_log(log: Path) -> dict[str, tuple[str, str]]:
    """``test id -> (outcome, "")`` from pytest's ``-v`` lines, for a module stopped by its timeout."""
    outcomes = {"PASSED": "passed", "XPASS": "passed", "SKIPPED": "skipped", "XFAIL": "skipped"}
    seen = {}
    for line in log.read_text(errors="replace").splitlines():
        match = _VERBOSE_LINE.match(line)
        if match:
            seen[match.group(1)] = (outcomes.get(match.group(2), "failed"), "")
    return seen


def parse_junit(report: Path, module: str) -> dict[str, tuple[str, str]]:
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314 — pytest's report, written just now
        classname = case.get("classname", "").rpartition(".")[2]
        name = case.get("name", "")
        if case.get("classname", "").endswith(Path(module).stem):
            test_id = f"{module}::{name}"
        else:
            test_id = f"{module}::{classname}::{name}"
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                first = (child.get("message") or child.tag).strip().splitlines()
                outcome, message = "failed", (first[0] if first else child.tag)[:160]
                break
            if child.tag == "skipped":
                outcome = "skipped"
        results[test_id] = (outcome, message)
    return results


def known_reason(test_id: str) -> str | None:
    return next((reason for pattern, reason in KNOWN_DIFFERENCES.items() if re.match(pattern, test_id)), None)


def summarize(suite: Suite) -> str:
    stock, ha = suite.results.get("stock", {}), suite.results.get("redis_ha", {})
    ran = [t for t, (outcome, _) in stock.items() if outcome != "skipped"]
    passed_stock = sum(1 for t in ran if stock[t][0] == "passed")
    passed_ha = sum(1 for t in ran if ha.get(t, ("missing", ""))[0] == "passed")
    lines = [f"{suite.name}: {len(ran)} tests run, {passed_stock} passed stock, {passed_ha} passed via redis_ha"]
    worse = [t for t in ran if stock[t][0] == "passed" and ha.get(t, ("missing", ""))[0] != "passed"]
    if worse:
        lines.append(f"  passed stock but not via redis_ha ({len(worse)}):")
        for test_id in worse:
            outcome, message = ha.get(test_id, ("missing", "not run (its module failed)"))
            reason = known_reason(test_id)
            lines.append(f"    {test_id}: {reason or f'{outcome}: {message}'}{'' if reason else ' [unexplained]'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", choices=("rq", "redis-py", "all"), default="all")
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="only this test module, SUITE:NAME for one suite's (repeatable; a suite none of whose modules is named "
        "runs them all)",
    )
    parser.add_argument("--redis-ha-path", default="", help="directory to import redis_ha from instead")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (reports, sources)")
    args = parser.parse_args(argv)

    pins = pinned_versions()
    suites = [Suite("rq", "rq", None), Suite("redis-py", "redis", REDIS_PY_MODULES)]
    suites = [s for s in suites if args.suite in ("all", s.name)]
    workdir = Path(tempfile.mkdtemp(prefix="redis-ha-upstream-"))
    started = time.monotonic()
    try:
        sources = download_and_unpack([f"{s.package}=={pins[s.package]}" for s in suites], workdir)
        with LoopbackCluster() as cluster:
            for suite in suites:
                source = sources[suite.package]
                modules = suite.modules or tuple(
                    str(p.relative_to(source)) for p in sorted((source / "tests").glob("test_*.py"))
                )
                named = {
                    n.removeprefix(f"{suite.name}:")
                    for n in args.module
                    if ":" not in n or n.startswith(f"{suite.name}:")
                }
                chosen = tuple(m for m in modules if m in named or Path(m).name in named)
                modules = chosen or modules
                for mode in MODES:
                    results = suite.results.setdefault(mode, {})
                    for module in modules:
                        cluster.wait_healthy(HEALTHY_TIMEOUT_S)
                        results |= run_module(suite, source, module, mode, cluster, workdir, args.redis_ha_path)
                        print(f"  {suite.name} {mode} {module} done at {time.monotonic() - started:.0f} s", flush=True)
        print()
        for suite in suites:
            print(summarize(suite))
    finally:
        if args.keep:
            print(f"Work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
