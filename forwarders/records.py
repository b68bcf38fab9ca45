"""The records a forwarder reads and writes, made from and into bytes: Outbound records in (from the
integration topic or its retry topic), dead letters, retry records and delivery receipts out. Pure.

Every record written is below MAX_RECORD_BYTES by construction, whatever the events hold: a record
over the broker's limit is refused (MSG_SIZE_TOO_LARGE), its batch's offsets are never stored, and the
batch is delivered again on every restart. Receipts are split in parts, texts and messageIds trimmed,
dead letters bounded as schemas/deadletters.py bounds them, and a record too large to retry is
dead-lettered instead."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from forwarders.delivery import SAMPLE_CHARS, Fate, RequestSample
from forwarders.vendors.base import Item
from schemas import AvroCodec
from schemas.deadletters import dead_letter, utf8
from schemas.errors import DecodeError
from schemas.secrets import scrub
from schemas.validation import DEFAULT_LIMITS

Outcome = tuple[str, int | None, int, str | None, str | None]  # state, status, attempts, reason, answer
ATTEMPTS: Final = "er-attempts"
FIRST_ATTEMPT: Final = "er-first-attempt-ms"
NOT_BEFORE: Final = "er-not-before-ms"
LAST_STATUS: Final = "er-last-status"

Headers = Sequence[tuple[str, bytes | None]]

# librdkafka refuses a message over message.max.bytes (1,000,000) and the broker one over ~1 MB: what we
# write stays well below both, with room for a record's key, headers and framing.
MAX_RECORD_BYTES: Final = 900_000
RECEIPT_BYTES: Final = 256_000   # a receipt part: a few thousand messageIds
MAX_ID_CHARS: Final = DEFAULT_LIMITS.id_chars  # the doors' cap; a longer (older) messageId is cut, with a hash
MAX_REASON_CHARS: Final = 500
RETRY_HEADROOM: Final = 1_000    # a retry record's headers and framing


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
        source_partition=item.partition, source_offset=item.offset, message_id=short_id(item.message_id) or None,
        integration=integration, attempts=fate.attempts, first_attempt_at=fate.first_attempt_ms,
        last_attempt_at=fate.finished_ms or None, vendor_status=fate.status, vendor_body=fate.body,
        headers=headers))


def retry_fits(item: Item) -> bool:
    """Whether `item` can go to the retry topic as it is (its bytes, key and our headers)."""
    return len(item.raw) + len((item.user_id or item.anonymous_id or "").encode()) + RETRY_HEADROOM <= \
        MAX_RECORD_BYTES


def short_id(message_id: str) -> str:
    """A messageId as receipts and dead letters carry it: whole up to MAX_ID_CHARS; a longer one cut, with
    a hash of the whole so two long ids stay apart."""
    if len(message_id) <= MAX_ID_CHARS:
        return message_id
    whole = hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:32]
    return utf8(message_id[:MAX_ID_CHARS - 48], MAX_ID_CHARS) + f"...sha256:{whole}"


def retry_headers(fate: Fate) -> list[tuple[str, bytes]]:
    return [(ATTEMPTS, str(fate.attempts).encode()), (FIRST_ATTEMPT, str(fate.first_attempt_ms).encode()),
            (NOT_BEFORE, str(fate.not_before_ms or 0).encode()), (LAST_STATUS, str(fate.status or 0).encode())]


def receipts(integration: str, items: Sequence[Item], fates: Mapping[int, Fate], *, requests: int,
             samples: Sequence[RequestSample] = (), now_ms: int | None = None,
             limit: int = RECEIPT_BYTES) -> list[bytes]:
    """One batch's outcomes: for each (state, status, attempts, reason, the vendor's answer to a dead
    event), the count and the messageIds, in one record, or in parts (`part`, `parts`; the batch's
    `requests` and `samples` of them in the first) each under `limit` bytes when the messageIds would not
    fit in one (700 ids of 600 characters did not, at 1 MB)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    groups: dict[Outcome, list[str]] = {}
    latencies = []
    for position, fate in fates.items():
        item = items[position]
        reason = utf8(scrub(fate.reason), MAX_REASON_CHARS) if fate.reason else fate.reason  # may quote the vendor
        answer = utf8(scrub(fate.body), SAMPLE_CHARS) if fate.body and fate.state == "dead" else None
        groups.setdefault((fate.state, fate.status, fate.attempts, reason, answer), []).append(
            short_id(item.message_id))
        if fate.state == "delivered" and item.written_ms:
            latencies.append(fate.finished_ms - item.written_ms)
    latencies.sort()
    head: dict[str, Any] = {
        "integration": integration, "topic": items[0].topic if items else "",
        "partition": items[0].partition if items else -1,
        "firstOffset": min((i.offset for i in items), default=-1),
        "lastOffset": max((i.offset for i in items), default=-1),
        "requests": requests, "at": now_ms,
        "samples": [{"at": r.at_ms, "events": r.events, "status": r.status, "tookMs": r.took_ms,
                     "answer": utf8(scrub(r.answer), SAMPLE_CHARS)} for r in samples],
        "latencyMs": {"p50": latencies[len(latencies) // 2], "max": latencies[-1]} if latencies else None}
    # at most 6 bytes of JSON a character (a control character's escape): most batches fit at a glance
    if sum(len(i) for ids in groups.values() for i in ids) * 6 + 600 * len(groups) + 1_000 <= limit:
        return [orjson.dumps({**head, "outcomes": [_outcome(key, ids) for key, ids in groups.items()]})]
    return _parts(head, groups, limit)


def _outcome(key: Outcome, ids: list[str]) -> dict[str, Any]:
    state, status, attempts, reason, answer = key
    return {"state": state, "status": status, "attempts": attempts, "reason": reason, "answer": answer,
            "count": len(ids), "messageIds": ids}


def _parts(head: dict[str, Any], groups: Mapping[Outcome, list[str]],
           limit: int) -> list[bytes]:
    """The receipt in parts under `limit` bytes (messageIds are at most MAX_ID_CHARS, 6 bytes of JSON a
    character: every part holds at least one)."""
    base = len(orjson.dumps({**head, "part": 0, "parts": 0, "outcomes": []})) + 20
    parts: list[list[dict[str, Any]]] = [[]]
    used = base
    for key, ids in groups.items():
        overhead = len(orjson.dumps(_outcome(key, []))) + 10
        chunk: list[str] = []
        for short in ids:
            size = len(orjson.dumps(short)) + 1
            if used + overhead + size > limit and (chunk or parts[-1]):
                if chunk:
                    parts[-1].append(_outcome(key, chunk))
                parts.append([])
                chunk, used = [], base
            chunk.append(short)
            used += size
        parts[-1].append(_outcome(key, chunk))
        used += overhead
    return [orjson.dumps({**head, "requests": head["requests"] if n == 0 else 0,
                          "samples": head["samples"] if n == 0 else [], "part": n + 1,
                          "parts": len(parts), "outcomes": outcomes}) for n, outcomes in enumerate(parts)]
