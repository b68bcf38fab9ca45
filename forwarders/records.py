"""The records a forwarder reads and writes, made from and into bytes: Outbound records in (from the
integration topic or its retry topic), dead letters, retry records and delivery receipts out. Pure."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from forwarders.delivery import Fate
from forwarders.vendors.base import Item
from schemas import AvroCodec
from schemas.deadletters import dead_letter
from schemas.errors import DecodeError

ATTEMPTS: Final = "er-attempts"
FIRST_ATTEMPT: Final = "er-first-attempt-ms"
NOT_BEFORE: Final = "er-not-before-ms"
LAST_STATUS: Final = "er-last-status"

Headers = Sequence[tuple[str, bytes | None]]


def header_int(headers: Headers | None, name: str) -> int | None:
    for key, value in headers or ():
        if key == name and value:
            try:
                return int(value)
            except ValueError:
                return None
    return None


# The Outbound fields an Item is made of: a forwarder's codec decodes only these (outbound_codec(fields=)).
ITEM_FIELDS: Final = ("messageId", "payload", "eventName", "type", "userId", "anonymousId", "timestamp")


def item_from(codec: AvroCodec, value: bytes | None, *, topic: str, partition: int, offset: int, written_ms: int,
              headers: Headers | None = None) -> Item:
    """The Item an Outbound record holds; DecodeError (dead-letter it) when it is not one."""
    record = codec.decode(value)
    try:
        payload = orjson.loads(record["payload"])
    except orjson.JSONDecodeError as exc:
        raise DecodeError("decode.corrupt", f"payload is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise DecodeError("decode.corrupt", "payload is not a JSON object")
    # Item's fields in order, made as a tuple: keywords cost 0.8 us more (an Item per record, per forwarder)
    return _new(Item, (record["messageId"], payload, record.get("eventName"), record["type"], record.get("userId"),
                       record.get("anonymousId"), record["timestamp"], partition, offset, value or b"",
                       header_int(headers, ATTEMPTS) or 0 if headers else 0,
                       header_int(headers, FIRST_ATTEMPT) if headers else None, topic, written_ms))


_new = tuple.__new__


def dead_letter_value(codec: AvroCodec, item: Item, fate: Fate, integration: str, *, stage: str = "deliver",
                      headers: Headers = ()) -> bytes:
    reason = (fate.reason or "vendor.rejected").split(":")[0][:100]
    return codec.encode(dead_letter(
        reason=reason, message=fate.reason or reason, stage=stage, original=item.raw, source_topic=item.topic,
        source_partition=item.partition, source_offset=item.offset, message_id=item.message_id or None,
        integration=integration, attempts=fate.attempts, first_attempt_at=fate.first_attempt_ms,
        last_attempt_at=fate.finished_ms or None, vendor_status=fate.status, vendor_body=fate.body,
        headers=headers))


def retry_headers(fate: Fate) -> list[tuple[str, bytes]]:
    return [(ATTEMPTS, str(fate.attempts).encode()), (FIRST_ATTEMPT, str(fate.first_attempt_ms).encode()),
            (NOT_BEFORE, str(fate.not_before_ms or 0).encode()), (LAST_STATUS, str(fate.status or 0).encode())]


def receipt(integration: str, items: Sequence[Item], fates: Mapping[int, Fate], *, requests: int,
            now_ms: int | None = None) -> bytes:
    """One batch's outcomes: for each (state, status, attempts, reason), the count and the messageIds."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    groups: dict[tuple[str, int | None, int, str | None], list[str]] = {}
    latencies = []
    for position, fate in fates.items():
        item = items[position]
        groups.setdefault((fate.state, fate.status, fate.attempts, fate.reason), []).append(item.message_id)
        if fate.state == "delivered" and item.written_ms:
            latencies.append(fate.finished_ms - item.written_ms)
    outcomes: list[dict[str, Any]] = [
        {"state": state, "status": status, "attempts": attempts, "reason": reason, "count": len(ids),
         "messageIds": ids} for (state, status, attempts, reason), ids in groups.items()]
    latencies.sort()
    return orjson.dumps({
        "integration": integration, "topic": items[0].topic if items else "",
        "partition": items[0].partition if items else -1,
        "firstOffset": min((i.offset for i in items), default=-1),
        "lastOffset": max((i.offset for i in items), default=-1),
        "requests": requests, "at": now_ms, "outcomes": outcomes,
        "latencyMs": {"p50": latencies[len(latencies) // 2], "max": latencies[-1]} if latencies else None})
