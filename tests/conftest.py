"""Shared fixtures: a real loopback Redis + Sentinel cluster, and its logs in failure reports."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest

from tests.support.cluster import LoopbackCluster

CLUSTER_FIXTURES = ("cluster", "cluster_module")


@pytest.fixture
def cluster() -> Iterator[LoopbackCluster]:
    """A started cluster of its own (1 master, 2 replicas, 3 sentinels, auth on).

    Function scope, because tests kill masters. If redis-server or redis-sentinel is missing the
    test fails at setup saying so: a skip would hide a broken machine.
    """
    with LoopbackCluster() as started:
        yield started


@pytest.fixture(scope="module")
def cluster_module() -> Iterator[LoopbackCluster]:
    """One started cluster shared by a module's tests; only for tests that leave it as they found it."""
    with LoopbackCluster() as started:
        yield started


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a cluster fixture as ``integration``, so ``-m`` selection is right
    even when a test forgets the marker."""
    for item in items:
        if set(CLUSTER_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tail of every cluster process log to the report of a failed test.

    Runs while the test's fixtures are still alive, so the processes' last words are all there.
    (A cluster that fails to start puts the relevant log tail in its exception instead.)
    """
    report = yield
    if report.failed and call.when == "call":
        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            if isinstance(value, LoopbackCluster) and value.started:
                report.sections.append((f"loopback cluster `{name}` process logs", value.log_tails()))
    return report
