"""No record can stop a forwarder: what it writes stays under the broker's limit whatever the events
hold (receipts in parts, messageIds and texts trimmed, a dead letter's original cut), and whatever one
event makes a vendor module or the transport raise is that event's dead letter, not the batch's end."""

from __future__ import annotations

import time
from collections.abc import Sequence

import orjson
import pytest

from forwarders.delivery import Answer, BatchDelivery, Fate
from forwarders.ratelimit import TokenBucket
from forwarders.records import MAX_ID_CHARS, MAX_RECORD_BYTES, RECEIPT_BYTES, dead_letter_value, receipts, retry_fits
from forwarders.vendors import Built, Item, Request, vendor_for
from forwarders.vendors.amplitude import Amplitude
from schemas import deadletter_codec
from schemas.delivery import Delivery


def delivered(n: int) -> dict[int, Fate]:
    return {i: Fate("delivered", 1, 1, 200, finished_ms=10) for i in range(n)}


@pytest.mark.parametrize("character", ["x", "€", "\x01", "😀"])
def test_receipts_of_700_events_with_600_character_ids_are_parts_under_the_limit(character: str) -> None:
    items = [Item(f"{i:05d}" + character * 595, {}, offset=i, written_ms=1) for i in range(700)]
    parts = receipts("amp", items, delivered(700), requests=3)
    assert all(len(part) <= RECEIPT_BYTES for part in parts)
    records = [orjson.loads(p) for p in parts]
    ids = [m for r in records for o in r["outcomes"] for m in o["messageIds"]]
    assert sum(o["count"] for r in records for o in r["outcomes"]) == 700 and len(set(ids)) == 700
    assert sum(r["requests"] for r in records) == 3
    if len(parts) > 1:
        assert [r["part"] for r in records] == list(range(1, len(parts) + 1)) and records[0]["parts"] == len(parts)


def test_a_small_receipt_is_one_record_with_whole_ids() -> None:
    items = [Item(f"id-{i}", {}, offset=i) for i in range(10)]
    (part,) = receipts("amp", items, delivered(10), requests=1)
    assert orjson.loads(part)["outcomes"][0]["messageIds"] == [f"id-{i}" for i in range(10)]


def test_ids_past_the_cap_are_cut_with_a_hash_and_stay_apart() -> None:
    items = [Item("a" * 5000 + str(i), {}, offset=i) for i in range(2)]
    (part,) = receipts("amp", items, delivered(2), requests=1)
    ids = orjson.loads(part)["outcomes"][0]["messageIds"]
    assert len(set(ids)) == 2 and all(len(i) <= MAX_ID_CHARS and "sha256:" in i for i in ids)


def test_a_dead_letter_of_a_record_near_the_limit_is_cut_to_fit() -> None:
    item = Item("m" * 20_000, {}, raw=b"\x00" * 1_040_000, offset=3, topic="t")
    fate = Fate("dead", 3, 1, 500, "retries_exhausted: " + "\udc80" * 10, "b" * 50_000)
    value = dead_letter_value(deadletter_codec(), item, fate, "amp")
    assert len(value) <= MAX_RECORD_BYTES
    record = deadletter_codec().decode(value)
    assert "original trimmed from 1040000" in record["message"] and record["sourceOffset"] == 3
    assert record["reason"] == "retries_exhausted" and len(record["messageId"]) <= MAX_ID_CHARS
    assert not retry_fits(item) and retry_fits(item._replace(raw=b"x" * 1000))


class Fussy(Amplitude):
    """Amplitude, but its build raises for an event whose payload says so (as a transform meeting a value
    it cannot take would)."""

    def build(self, items: Sequence[Item]) -> Built:
        for item in items:
            if "boom" in item.payload:
                raise item.payload["boom"]
        return super().build(items)


def fussy_delivery(answer: object = None) -> tuple[BatchDelivery, list[Request]]:
    sent: list[Request] = []

    def transport(request: Request) -> Answer:
        sent.append(request)
        return Answer(200, {}, b'{"code":200}')
    vendor = Fussy({"api_key": "secret-key-1"})
    return BatchDelivery(vendor, Delivery(), transport, TokenBucket(None)), sent


def amplitude_items(n: int) -> list[Item]:
    return [Item(f"m{i}", {"event_type": "e", "user_id": f"user-{i}"}) for i in range(n)]


@pytest.mark.parametrize("error", [OverflowError("date value out of range"), KeyError("secret-key-1"),
                                   TypeError("Recursion limit reached")])
def test_an_event_the_vendor_module_cannot_build_is_dead_lettered_and_the_others_go_together(
        error: Exception) -> None:
    delivery, sent = fussy_delivery()
    items = amplitude_items(6)
    items[2] = items[2]._replace(payload={"event_type": "e", "boom": error})
    report = delivery.deliver(items)
    fate = report.fates[2]
    assert fate.state == "dead" and fate.reason is not None
    assert fate.reason.startswith(f"forwarder.build_failed: {type(error).__name__}: ")
    assert "secret-key-1" not in fate.reason  # scrubbed like a vendor's answer
    assert all(report.fates[i].state == "delivered" for i in range(6) if i != 2)
    assert len(sent) == 1 and len(orjson.loads(sent[0].body)["events"]) == 5  # the others: one request


def test_a_request_that_cannot_be_sent_is_split_until_the_event_is_alone() -> None:
    def transport(request: Request) -> Answer:
        events = orjson.loads(request.body)["events"]
        if any(e.get("user_id") == "user-5" for e in events):
            raise ValueError("Invalid header value")
        return Answer(200, {}, b'{"code":200}')
    delivery = BatchDelivery(vendor_for("amplitude", {"api_key": "k"}), Delivery(), transport, TokenBucket(None))
    report = delivery.deliver(amplitude_items(8))
    assert report.fates[5].state == "dead" and (report.fates[5].reason or "").startswith(
        "forwarder.send_failed: ValueError")
    assert all(report.fates[i].state == "delivered" for i in range(8) if i != 5)


def test_an_answer_the_module_cannot_read_is_read_by_its_status() -> None:
    class Garbled(Amplitude):
        def read(self, request: Request, status: int, headers: object, body: bytes) -> object:  # type: ignore[override]
            raise IndexError("list index out of range")
    delivery = BatchDelivery(Garbled({"api_key": "k"}), Delivery(), lambda r: Answer(200, {}, b"[]"), TokenBucket(None))
    report = delivery.deliver(amplitude_items(3))
    assert {f.state for f in report.fates.values()} == {"delivered"}


def test_anything_else_a_batch_raises_is_found_event_by_event() -> None:
    class Broken(Amplitude):
        def before_send(self, request: Request) -> None:
            if len(request.items) == 1 and orjson.loads(request.body)["events"][0]["user_id"] == "user-1":
                raise SystemError("a bug")  # escapes nothing: caught at the request, then split

    delivery = BatchDelivery(Broken({"api_key": "k"}), Delivery(), lambda r: Answer(200, {}, b"{}"),
                             TokenBucket(None))
    delivery.max_age_s = 60.0  # ages checked against a timestamp the test breaks below
    items = [item._replace(timestamp_ms=int(time.time() * 1000)) for item in amplitude_items(4)]
    items[3] = items[3]._replace(timestamp_ms=None)  # type: ignore[arg-type]  # comparing None raises TypeError
    report = delivery.deliver(items)
    assert report.fates[3].state == "dead" and (report.fates[3].reason or "").startswith("forwarder.failed: TypeError")
    assert report.fates[1].state == "dead" and (report.fates[1].reason or "").startswith("forwarder.send_failed")
    assert report.fates[0].state == report.fates[2].state == "delivered"


class _Producer:  # the one call Outcomes makes of a confluent-kafka Producer
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, *, headers: object = None,
                on_delivery: object = None) -> None:
        self.records.append((topic, value))


def test_a_record_too_large_for_the_retry_topic_is_dead_lettered_as_too_large_and_its_offset_moves_on() -> None:
    from concurrent.futures import Future

    from forwarders.delivery import BatchReport
    from forwarders.metrics import ForwarderMetrics
    from forwarders.outcomes import Outcomes
    from forwarders.state import Flight, PartitionState
    from schemas import Topics

    big = Item("m-big", {}, raw=b"\x00" * 1_040_000, offset=7, topic="t")
    small = Item("m-small", {}, raw=b"x" * 100, offset=8, topic="t")
    later = Fate("later", 1, 1, 503, "http.503: busy")
    future: Future[BatchReport] = Future()
    future.set_result(BatchReport({0: later, 1: later}, requests=1))
    topics = Topics("p")
    outcomes = Outcomes("amp", topics, ForwarderMetrics("amp"), TokenBucket(None))
    outcomes.producer = producer = _Producer()
    state = PartitionState()
    outcomes.settle(("t", 0), state, Flight(future, [big, small], [7, 8], (0, 2), True, frozenset()))
    written = {topic: [v for t, v in producer.records if t == topic] for topic, _ in producer.records}
    assert written[topics.retry("amp")] == [small.raw]  # the one that fits is retried
    (letter,) = [deadletter_codec().decode(v) for v in written[topics.dead_letters("amp")]]
    assert letter["reason"] == "forwarder.too_large" and letter["sourceOffset"] == 7
    assert state.tickets[-1].offset == (("t", 0), 9)  # both accounted for: the partition moves past them
