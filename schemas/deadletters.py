"""The dead-letter record every stage writes: what failed, why, where it came from, and its original bytes.

Bounded by construction, whatever it is given, so it never fails with MSG_SIZE_TOO_LARGE (written again
forever, it would stall the stage): message and vendor body 2,000 characters, messageId 512
(`Limits.id_chars`), original headers 64 KiB, original bytes the rest of RECORD_BYTES less a margin for
the fields (what the gateway and the SDK write is at most 32 KB an event, so only a foreign record
can be trimmed; its message says so)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any, Final

from schemas.runtime.kafka import RECORD_BYTES
from schemas.secrets import scrub
from schemas.validation import DEFAULT_LIMITS

TEXT_CHARS: Final = 2000                   # message, vendor body
HEADER_BYTES: Final = 64 * 1024            # original headers kept (keys and values), in their order
NAME_CHARS: Final = 1000                   # stage, reason, integration, pipeline, topic (ours: short)
# what the other fields can take as Avro (each character up to 4 bytes in UTF-8), so the original gets the rest
_FIELDS_BYTES: Final = 4 * (2 * TEXT_CHARS + DEFAULT_LIMITS.id_chars + 5 * NAME_CHARS) + HEADER_BYTES + 4096
ORIGINAL_BYTES: Final = RECORD_BYTES - _FIELDS_BYTES - 64 * 1024  # and 64 KiB for Kafka's record overhead


def dead_letter(*, reason: str, message: str, stage: str, original: bytes, source_topic: str,
                source_partition: int = -1, source_offset: int = -1, message_id: str | None = None,
                integration: str | None = None, pipeline: str | None = None, attempts: int = 0,
                first_attempt_at: int | None = None, last_attempt_at: int | None = None,
                vendor_status: int | None = None, vendor_body: str | None = None,
                headers: Iterable[tuple[str, bytes | None]] = (), now_ms: int | None = None) -> dict[str, Any]:
    """A `DeadLetter` record (schemas/avro/deadletter.avsc), trimmed to its bounds (see the module's
    docstring). Reason, message and vendor body are scrubbed of every secret the process knows
    (schemas/secrets.py SCRUBBER): a vendor's answer may echo the request, its key and headers."""
    reason, message = scrub(reason), scrub(message)
    vendor_body = scrub(vendor_body) if vendor_body else vendor_body
    kept, room, dropped = [], HEADER_BYTES, 0
    for key, value in headers:
        size = len(key) * 4 + len(value or b"")
        if size > room:
            dropped += 1
            continue
        room -= size
        kept.append({"key": key, "value": value})
    notes = []
    if dropped:
        notes.append(f"{dropped} original headers over {HEADER_BYTES} bytes left out")
    if len(original) > ORIGINAL_BYTES:
        notes.append(f"original trimmed from {len(original)} to {ORIGINAL_BYTES} bytes")
        original = original[:ORIGINAL_BYTES]
    if notes:
        message = f"{message[:TEXT_CHARS - 200]} ({'; '.join(notes)})"
    return {
        "reason": utf8(reason, NAME_CHARS), "message": utf8(message, TEXT_CHARS), "stage": utf8(stage, NAME_CHARS),
        "integration": utf8(integration, NAME_CHARS) if integration else integration,
        "pipeline": utf8(pipeline, NAME_CHARS) if pipeline else pipeline,
        "messageId": utf8(message_id, DEFAULT_LIMITS.id_chars) if message_id else message_id, "attempts": attempts,
        "firstAttemptAt": first_attempt_at, "lastAttemptAt": last_attempt_at, "vendorStatus": vendor_status,
        "vendorBody": utf8(vendor_body, TEXT_CHARS) if vendor_body else vendor_body,
        "sourceTopic": utf8(source_topic, NAME_CHARS), "sourcePartition": source_partition,
        "sourceOffset": source_offset,
        "originalHeaders": kept, "originalBytes": original,
        "deadLetteredAt": now_ms if now_ms is not None else int(time.time() * 1000),
    }


def utf8(value: str, limit: int) -> str:
    """`value` cut to `limit` characters, as valid UTF-8 (an exception's or a vendor's text may hold lone
    surrogates, which Avro's string cannot encode)."""
    value = value[:limit]
    try:
        value.encode()
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode()
    return value


def describe_error(exc: BaseException) -> str:
    """A dead letter's message for an exception no check foresaw: its type (class name), its text, and
    where it was raised (file:line in function), e.g. `OverflowError: date value out of range (at
    normalize.py:24 in iso_ms)`. The type and place say which bug it is; the traceback is not kept."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__, limit=-1) if exc.__traceback__ is not None else []
    if frames:
        last = frames[-1]
        where = f" (at {PurePath(last.filename).name}:{last.lineno} in {last.name})"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:300]}{where}" if text else f"{type(exc).__name__}{where}"
