"""What we write to Kafka is bounded by construction: ids are capped at every door (SDK, gateway,
file import, the worker's admission), and the records the worker builds itself (dedup log, dead
letters, Outbound records) stay under the broker's limit whatever they are given."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from producers import Analytics
from producers.importer import prepare_line
from producers.tracking_api import parse_request
from schemas import EventCodec, Topics, deadletter_codec
from schemas.config import parse_config
from schemas.deadletters import dead_letter
from schemas.runtime.kafka import RECORD_BYTES
from schemas.validation import DEFAULT_LIMITS, Limits, ValidationError, check_message
from streams.dedup import LOG_RECORD_BYTES, Deduplicator
from streams.router import Admitted, Rejected, Router, Source

CAP = DEFAULT_LIMITS.id_chars
LONG = "i" * (CAP + 1)
IDS = ("messageId", "userId", "anonymousId", "groupId", "previousId")


def test_the_id_cap_is_512_characters_and_configurable() -> None:
    assert CAP == 512
    with pytest.raises(ValueError, match="id_chars"):
        Limits(id_chars=0)


@pytest.mark.parametrize("field", IDS)
def test_check_message_refuses_an_id_over_the_cap_naming_it(field: str) -> None:
    message = {"type": "alias", "userId": "u", "previousId": "p", "messageId": "m", field: LONG}
    with pytest.raises(ValidationError) as caught:
        check_message(message)
    assert caught.value.reason == "limit.id" and caught.value.field == field and caught.value.limit == CAP
    check_message({**message, field: "i" * CAP})  # at the cap: accepted


@pytest.mark.parametrize("argument", ["user_id", "anonymous_id", "message_id"])
def test_the_sdk_refuses_an_id_over_the_cap_at_the_call(argument: str) -> None:
    analytics = Analytics("wk", "127.0.0.1:9", send=False)
    call: dict[str, Any] = {"user_id": "u", "event": "E", argument: LONG}
    with pytest.raises(ValidationError) as caught:
        analytics.track(**call)
    assert caught.value.reason == "limit.id"
    with pytest.raises(ValidationError, match="limit of 512"):
        analytics.group("u", LONG)
    with pytest.raises(ValidationError, match="limit of 512"):
        analytics.alias(LONG, "u")


def test_the_gateway_rejects_the_event_with_a_long_id_and_keeps_the_rest() -> None:
    batch = [{"type": "track", "userId": "u", "event": "E", "messageId": LONG},
             {"type": "track", "userId": LONG, "event": "E"},
             {"type": "track", "userId": "u", "event": "E", "messageId": "ok"}]
    parsed = parse_request("batch", {"batch": batch}, "wk", is_known=lambda key: key == "wk",
                           received_at="2026-11-26T00:00:00Z", new_id=lambda: "generated", limits=DEFAULT_LIMITS)
    assert [(r.index, r.reason) for r in parsed.rejected] == [(0, "limit.id"), (1, "limit.id")]
    assert [e["messageId"] for e in parsed.accepted] == ["ok"]


def test_the_importer_refuses_a_line_with_a_long_id() -> None:
    line = orjson.dumps({"type": "identify", "userId": LONG})
    with pytest.raises(ValidationError) as caught:
        prepare_line(line, origin="f", number=1, write_key="wk")
    assert caught.value.reason == "limit.id"


def test_the_worker_dead_letters_an_old_or_foreign_record_with_a_long_id() -> None:
    router = Router(parse_config("""
pipelines: [{name: web, write_keys: [wk], integrations: [hook]}]
integrations: [{name: hook, kind: webhook, connection: {url: "https://x.example/h"}, playbook: "starter:webhook"}]
"""), 1, Topics("t"))
    for field in ("messageId", "userId"):
        event = {"type": "track", "event": "E", "userId": "u", "messageId": "m", "writeKey": "wk", field: "x" * 16_384}
        outcome = router.admit(Source(EventCodec().encode(event), "t.raw", 0, 1, 1_795_000_000_000))
        assert isinstance(outcome, Rejected) and outcome.reason == "limit.id" and field in outcome.message
        letter = deadletter_codec().decode(outcome.dead_letter.value)
        assert len(letter["messageId"] or "") <= CAP
    ok = router.admit(Source(EventCodec().encode({"type": "track", "event": "E", "userId": "u" * CAP,
                                                  "messageId": "m" * CAP, "writeKey": "wk"}),
                             "t.raw", 0, 2, 1_795_000_000_000))
    assert isinstance(ok, Admitted)


def test_dedup_log_records_stay_under_the_limit_for_the_largest_batch() -> None:
    """Keys at the cap, all escaped in JSON (6 bytes a character), in one batch far larger than any
    --batch-size: every record is under the limit and every key is in one of them."""
    keys = [f"pipeline\x1f{i:06d}" + "\x01" * (CAP - 6) for i in range(5000)]
    dedup = Deduplicator({}, "log", 60, per_key=False)
    records = dedup.mark([(i % 3, key) for i, key in enumerate(keys)], now_ms=1_000)
    assert max(len(r.value or b"") for r in records) <= LOG_RECORD_BYTES < RECORD_BYTES
    assert sorted(k for r in records for k in orjson.loads(r.value or b"")["k"]) == sorted(keys)
    assert {r.partition for r in records} == {0, 1, 2}


def test_a_dead_letter_of_the_largest_inputs_stays_under_the_limit() -> None:
    record = dead_letter(reason="error.route", message="m" * 1_000_000, stage="route", original=b"o" * 1_048_576,
                         source_topic="t.raw", message_id="\U0001f600" * 16_384, vendor_body="b" * 1_000_000,
                         headers=[(f"h{i}", b"v" * 20_000) for i in range(100)], integration="i", pipeline="p")
    value = deadletter_codec().encode(record)
    assert len(value) < RECORD_BYTES - 64 * 1024
    letter = deadletter_codec().decode(value)
    assert "original trimmed from 1048576" in letter["message"] and "headers" in letter["message"]
    assert len(letter["originalHeaders"]) == 3 and len(letter["messageId"]) == CAP
    small = dead_letter(reason="r", message="m", stage="s", original=b"x" * 40_000, source_topic="t",
                        headers=[("h", b"v")])
    assert small["originalBytes"] == b"x" * 40_000 and small["message"] == "m"  # what we write is kept whole


def test_an_outbound_record_over_the_limit_is_dead_lettered_for_that_integration() -> None:
    router = Router(parse_config("""
pipelines: [{name: web, write_keys: [wk], integrations: [hook, copies]}]
integrations:
  - {name: hook, kind: webhook, connection: {url: "https://x.example/h"}, playbook: "starter:webhook"}
  - name: copies
    kind: webhook
    connection: {url: "https://x.example/h"}
    playbook: {global: {mappings: [""" + ", ".join(f"{{from: properties, to: c{i}}}" for i in range(60)) + """]}}
"""), 1, Topics("t"))
    event = {"type": "track", "event": "E", "userId": "u", "messageId": "m", "writeKey": "wk",
             "properties": {f"k{i}": "v" * 1000 for i in range(30)}}
    admitted = router.admit(Source(EventCodec().encode(event), "t.raw", 0, 1, 1_795_000_000_000))
    assert isinstance(admitted, Admitted)
    routed = router.route(admitted)
    assert [o.integration for o in routed.outputs] == ["hook"]
    assert [(n, r) for n, r, _ in routed.failed] == [("copies", "playbook.output_too_large")]


def test_the_importer_keeps_integers_exact_and_refuses_those_beyond_64_bits() -> None:
    """orjson alone would read 2**70 as a rounded float and import it; read as the gateway reads it."""
    line = b'{"type": "track", "userId": "u", "event": "e", "properties": {"n": %d}}'
    assert prepare_line(line % (2**63 - 1), origin="f", number=1, write_key="wk")["properties"] == {"n": 2**63 - 1}
    with pytest.raises(ValidationError) as caught:
        prepare_line(line % 2**70, origin="f", number=1, write_key="wk")
    assert caught.value.reason == "invalid.unencodable"
