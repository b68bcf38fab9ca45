"""Poison pills on the real broker: records that once crashed the stream worker at every start, sent
between good ones to a running worker (both engines). Each is dead-lettered with a clear reason (or,
the Braze birthday, routed without the value no one can hold); every good record is routed; the worker
process never exits."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.figures import Figures
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.worker_helpers import WorkerProcess, dead_letters, outbound, send_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CONFIG = """
pipelines:
  - {name: web, write_keys: [wk1], integrations: [amp, braze, hook]}
integrations:
  - {name: amp, kind: amplitude, connection: {api_key: "${AMP_KEY}"}, playbook: "starter:amplitude"}
  - {name: braze, kind: braze, connection: {api_key: "${BRAZE_KEY}"}, playbook: "starter:braze"}
  - {name: hook, kind: webhook, connection: {url: "https://crm.example/hook"}, playbook: "starter:webhook"}
"""
YEAR_1_EAST = "0001-01-01T00:00:00+14:00"


def _track(i: int, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Signed Up", "userId": f"user-{i % 7}", "writeKey": "wk1",
            "messageId": f"good-{i}-{uuid.uuid4().hex[:6]}", "originalTimestamp": "2026-11-26T10:00:00.000Z",
            "sentAt": "2026-11-26T10:00:00.000Z", "properties": {"seq": i}, **extra}


def _pills() -> list[tuple[dict[str, Any], str]]:
    """(event, what must become of it): a dead-letter reason, or `routed` (to braze, the value left out)."""
    def pill(name: str, **fields: Any) -> dict[str, Any]:
        return {**_track(0), "messageId": f"pill-{name}-{uuid.uuid4().hex[:6]}", **fields}

    return [
        (pill("timestamp", timestamp=YEAR_1_EAST), "invalid.timestamp"),
        (pill("sent", sentAt=YEAR_1_EAST), "invalid.timestamp"),
        (pill("original", originalTimestamp=YEAR_1_EAST), "invalid.timestamp"),
        (pill("late", timestamp="9999-12-31T23:59:59-14:00"), "invalid.timestamp"),
        (pill("skew", sentAt="9998-01-01T00:00:00Z", originalTimestamp="0001-01-01T00:00:00Z"), "routed"),
        ({**pill("birthday"), "type": "identify", "traits": {"birthday": YEAR_1_EAST, "email": "a@example.com"}},
         "routed"),
        ({**_track(0), "messageId": "m" * 16_384}, "limit.id"),
        (pill("user", userId="u" * 16_384), "limit.id"),
        (pill("huge", properties={"revenue": 1e308, "price": -0.0, "quantity": 2**63 - 1}), "routed"),
        (pill("revenue", properties={"revenue": "a lot", "products": "none"}), "routed"),
        (pill("dict", userId={"id": 1}), "invalid.field_type"),
        ({**pill("traits"), "type": "identify", "traits": ["a", "list"]}, "invalid.field_type"),
    ]


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_poison_records_between_good_ones_are_dead_lettered_and_the_worker_never_exits(
        bootstrap: str, tmp_path: Path, engine: str, figures: Figures) -> None:
    config = tmp_path / "eventrouter.yaml"
    config.write_text(CONFIG)
    topics = fresh_topics(bootstrap)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=config, engine=engine, batch_size=5)
    pills = _pills()
    try:
        worker.wait_for_revision(1)
        good: list[dict[str, Any]] = []
        for index, (event, _fate) in enumerate(pills):  # each pill between good records, in the same batches
            before, after = _track(2 * index), _track(2 * index + 1)
            good += [before, after]
            send_events(bootstrap, topics, [before, event, after])
        wanted = Counter(fate for _event, fate in pills if fate != "routed")
        letters = dead_letters(bootstrap, topics.invalid, sum(wanted.values()), timeout=120, settle=2.0)
        assert Counter(letter["reason"] for letter in letters) == wanted
        for letter in letters:
            assert letter["message"] and letter["stage"] == "validate" and letter["sourceTopic"] == topics.raw
            assert not letter["reason"].startswith("error.")  # each named by a check, none by the safety net
            assert len(letter["messageId"] or "") <= 512 and letter["originalBytes"]
        assert {letter["message"].split(":")[0] for letter in letters if letter["reason"] == "invalid.timestamp"} \
            == {"timestamp", "sentAt", "originalTimestamp"}

        routed = {p["messageId"] for p, fate in pills if fate == "routed"}
        good_ids = {e["messageId"] for e in good}
        hook = outbound(bootstrap, topics.integration("hook"), len(good) + len(routed), timeout=120, settle=1.0)
        assert {r["messageId"] for r in hook} == good_ids | routed
        amp = outbound(bootstrap, topics.integration("amp"), len(good) + len(routed), timeout=60, settle=1.0)
        assert good_ids <= {r["messageId"] for r in amp}
        braze = outbound(bootstrap, topics.integration("braze"), len(good) + len(routed), timeout=60, settle=1.0)
        identify = [r for r in braze if r["messageId"].startswith("pill-birthday")]
        assert len(identify) == 1
        payload = json.loads(identify[0]["payload"])
        assert payload.get("dob") is None and payload["email"] == "a@example.com"
        assert worker.process.poll() is None, worker.log()
        if engine == "kafka":
            figures.report("a record with extreme values (year 1 or 9999 with any offset, 1e308, 16k-character ids, "
                           "wrong types in well-known fields) between good ones", dead_letters=dict(wanted),
                           good_routed=len(good), worker_exited=False)
    finally:
        worker.stop()
