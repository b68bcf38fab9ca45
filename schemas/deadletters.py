"""The dead-letter record every stage writes: what failed, why, where it came from, and its original bytes."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any


def dead_letter(*, reason: str, message: str, stage: str, original: bytes, source_topic: str,
                source_partition: int = -1, source_offset: int = -1, message_id: str | None = None,
                integration: str | None = None, pipeline: str | None = None, attempts: int = 0,
                first_attempt_at: int | None = None, last_attempt_at: int | None = None,
                vendor_status: int | None = None, vendor_body: str | None = None,
                headers: Iterable[tuple[str, bytes | None]] = (), now_ms: int | None = None) -> dict[str, Any]:
    """A `DeadLetter` record (schemas/avro/deadletter.avsc). Callers scrub secrets from `message` and bodies."""
    return {
        "reason": reason, "message": message[:2000], "stage": stage, "integration": integration,
        "pipeline": pipeline, "messageId": message_id, "attempts": attempts,
        "firstAttemptAt": first_attempt_at, "lastAttemptAt": last_attempt_at, "vendorStatus": vendor_status,
        "vendorBody": vendor_body[:2000] if vendor_body else vendor_body, "sourceTopic": source_topic,
        "sourcePartition": source_partition, "sourceOffset": source_offset,
        "originalHeaders": [{"key": k, "value": v} for k, v in headers],
        "originalBytes": original, "deadLetteredAt": now_ms if now_ms is not None else int(time.time() * 1000),
    }


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
