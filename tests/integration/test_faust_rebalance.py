"""Faust's read offset outlives a revocation, against the real broker (the cause of the records the
Faust engine's OffsetGuard catches, docs/decisions.md "Engines").

Member A (tests/integration/faust_rebalance_probe.py) works slowly through a backlog on 2 partitions, so
its drain loop waits for the stream. Member B joins (A loses a partition) and leaves (A gets it back).
Faust forgets a partition's read offset on revocation, but its drain loop, woken by the suspended flow,
writes the offset of the record it was waiting to deliver: the partition comes to A in the next
assignment with that read offset already set, and until Faust's seek (which an app with a table does
after resuming the partitions) records of it below that offset are dropped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from schemas.runtime.kafka import ensure_topics, producer_settings
from tests.figures import Figures

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def journal(path: Path) -> list[list[Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def member(bootstrap: str, topic: str, group: str, folder: Path, *, name: str, ack: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PROBE_BOOTSTRAP": bootstrap, "PROBE_IN": topic, "PROBE_GROUP": group,
           "PROBE_DATADIR": str(folder / f"{name}-data"), "PROBE_JOURNAL": str(folder / f"{name}.jsonl"),
           "PROBE_ACK": "1" if ack else "0"}
    log = open(folder / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
    command = [sys.executable, "-m", "faust", "-A", "tests.integration.faust_rebalance_probe", "worker",
               "--without-web", "-l", "info"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_read_offset_written_after_a_revocation_is_carried_into_the_next_assignment(
        bootstrap: str, topic_name: str, tmp_path: Path, figures: Figures) -> None:
    ensure_topics(bootstrap, [topic_name], partitions=2)
    producer = Producer(producer_settings(bootstrap))
    for i in range(6000):
        producer.produce(topic_name, f"r{i}".encode(), partition=i % 2)
    assert producer.flush(30) == 0
    group = f"probe-{uuid.uuid4().hex[:8]}"
    a = member(bootstrap, topic_name, group, tmp_path, name="a", ack=True)
    b = None
    try:
        def events() -> list[list[Any]]:
            return journal(tmp_path / "a.jsonl")
        until(lambda: len([e for e in events() if e[0] == "yield"]) > 100, 90, "A never read")
        b = member(bootstrap, topic_name, group, tmp_path, name="b", ack=False)
        until(lambda: any(e[0] == "revoked" and e[2] for e in events()) and
              any(e[0] == "assigned" and len(e[2]) == 1 for e in events()), 90, "A never lost a partition to B")
        time.sleep(2)
        b.send_signal(signal.SIGTERM)
        b.wait(60)
        until(lambda: bool([e for e in events() if e[0] == "assigned"][-1][2] == [0, 1]), 90,
              "A never got both back")
        time.sleep(2)
    finally:
        for process in (b, a):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
    seen = [e for e in events() if e[0] != "yield"]
    stale = [e for e in seen if e[0] == "stale"]
    carried = {(e[1], int(p)): offset for e in seen if e[0] == "assigned" for p, offset in e[3].items()
               if offset is not None}
    figures.report("Faust's read offset across a revocation (member B joins, then leaves)",
                   written_after_revocation=len(stale), carried_into_an_assignment=len(carried))
    assert stale, seen  # Faust wrote a read offset after forgetting it ...
    assert carried, seen  # ... and a partition came to this member (again) with it, before any seek
