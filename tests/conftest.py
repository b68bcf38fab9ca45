"""Shared fixtures: a real Kafka broker per test session (one node; three nodes on demand).

Brokers are started by the fixture and stopped by PID in its teardown, which pytest runs even
when tests fail; an atexit hook covers an interrupted session. Jars are cached in
$EVENTROUTER_CACHE (default .eventrouter/cache in the checkout, git-ignored).
"""

from __future__ import annotations

import atexit
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventrouter.dev.localkafka import LocalKafka
from schemas.native import compiled_current
from tests.figures import Figures, table

REPO = Path(__file__).resolve().parent.parent

# The vendor stand-ins listen on loopback: the operator's list of private networks an integration may reach
# with `allow_private` (forwarders/ssrf.py) holds loopback for the whole session, subprocesses included.
# Each config that points a vendor at a stand-in still opts in itself (allow_http, allow_private).
os.environ.setdefault("EVENTROUTER_PRIVATE_NETWORKS", "127.0.0.0/8,::1/128")

# A test that replaces a module's function or an object's method to force a failure runs as plain Python
# only: a compiled module binds its names at build time. tests/unit/schemas/test_native.py runs the unit
# tests again as plain Python, so such a test still runs in every full run.
replaces_compiled_names = pytest.mark.skipif(compiled_current(), reason="replaces names a compiled module "
                                             "binds; runs in the plain-Python pass of the unit tests")


def _cache_dir() -> Path:
    return Path(os.environ.get("EVENTROUTER_CACHE", str(REPO / ".eventrouter" / "cache")))


def _start(tmp: Path, nodes: int) -> LocalKafka:
    kafka = LocalKafka(tmp, _cache_dir())
    atexit.register(kafka.stop)
    try:
        kafka.start(nodes=nodes)
    except BaseException:
        kafka.stop()
        raise
    return kafka


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """The test run's single-node broker (LocalKafka handle)."""
    kafka = _start(tmp_path_factory.mktemp("kafka-1node"), nodes=1)
    yield kafka
    kafka.stop()


@pytest.fixture(scope="session")
def bootstrap(kafka_broker: LocalKafka) -> str:
    """Bootstrap address of the test run's single-node broker."""
    status = kafka_broker.status()
    assert status.bootstrap is not None
    return status.bootstrap


@pytest.fixture(scope="session")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A three-broker KRaft cluster (replication factor 3, min ISR 2), started on first use."""
    kafka = _start(tmp_path_factory.mktemp("kafka-3node"), nodes=3)
    yield kafka
    kafka.stop()


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name unique to this test (and this run)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    return f"t.{base}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    """Report a fault-table row's figures; the run ends with a table of all of them."""
    return Figures(request.node.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = table()
    if lines:
        terminalreporter.section("reliability figures (the fault table's rows: docs/reliability.md)")
        for line in lines:
            terminalreporter.write_line(line)
