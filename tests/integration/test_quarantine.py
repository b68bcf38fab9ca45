"""Quarantine on the real broker: a worker whose process dies outright on one record (os._exit, as a
segfault would; tests/integration/crashing_worker.py) is restarted by the test, as a supervisor would.
The guard makes the record's span go one record at a time, pins the record, and after N crashes on it
alone dead-letters it as `quarantined` and goes on: every good record before and after it is routed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from streams.stall import STALLED
from tests.figures import Figures
from tests.integration.crashing_worker import CRASH_MARKER
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.worker_helpers import WorkerProcess, dead_letters, outbound, send_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CONFIG = """
pipelines:
  - {name: web, write_keys: [wk1], integrations: [hook]}
integrations:
  - {name: hook, kind: webhook, connection: {url: "https://crm.example/hook"}, playbook: "starter:webhook"}
"""
N = 3  # WorkerSettings.quarantine_after, the default


def _track(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": "one-user", "writeKey": "wk1",  # one partition
            "messageId": f"good-{i}-{uuid.uuid4().hex[:6]}", "properties": {"seq": i}, **extra}


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_a_record_that_kills_the_worker_at_every_start_is_quarantined_and_the_rest_routed(
        engine: str, bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    config = tmp_path / "eventrouter.yaml"
    config.write_text(CONFIG)
    topics = fresh_topics(bootstrap)
    before = [_track(i) for i in range(6)]
    poison = _track(99, messageId=f"poison-{uuid.uuid4().hex[:6]}", properties={"note": CRASH_MARKER.decode()})
    after = [_track(i) for i in range(100, 106)]
    send_events(bootstrap, topics, [*before, poison, *after])
    starts, exits = 0, list[int]()
    worker: WorkerProcess | None = None
    try:
        while True:
            starts += 1
            assert starts - exits.count(STALLED) <= N + 3, f"still crash-looping after {starts - 1} starts: {exits}"
            worker = WorkerProcess(bootstrap, topics, tmp_path, f"w{starts}", config=config, batch_size=50,
                                   engine=engine,
                                   module="tests.integration.crashing_worker",
                                   extra=("--data-dir", str(tmp_path / "worker-data")))  # one state folder
            deadline = time.monotonic() + 120
            while worker.process.poll() is None and time.monotonic() < deadline:
                if worker.metric("eventrouter_worker_invalid_total{") >= 1:
                    break
                time.sleep(0.3)
            code = worker.process.poll()
            if code is None:
                break  # running, past the record
            exits.append(code)
            worker.stop()
        # twice in its batch, then N times alone; N + 1 when a read-back batch held the record alone (an engine
        # may fetch fewer records after a restart): its crashes in that span count as crashes alone. A worker
        # that stopped because its engine stalled (STALLED) was started again, as a supervisor does.
        crashes = [code for code in exits if code == 70]
        assert set(exits) <= {70, STALLED} and N + 1 <= len(crashes) <= N + 2, exits
        letters = dead_letters(bootstrap, topics.invalid, 1, timeout=60, settle=1.0)
        assert [(d["reason"], d["stage"], d["sourceTopic"]) for d in letters] == [("quarantined", "route", topics.raw)]
        assert CRASH_MARKER in letters[0]["originalBytes"] and f"exited {N} times" in letters[0]["message"]
        hook = outbound(bootstrap, topics.integration("hook"), len(before) + len(after), timeout=120, settle=1.0)
        assert {r["messageId"] for r in hook} >= {e["messageId"] for e in before + after}
        assert poison["messageId"] not in {r["messageId"] for r in hook}
        assert worker is not None and worker.process.poll() is None, worker.log()
        figures.report(f"a process that still dies on the same record at every start ({engine} engine)",
                       quarantined=1,
                       process_exits=len(exits), good_routed=len(before) + len(after), lost=0)
    finally:
        if worker is not None:
            worker.stop()
