"""Segment's HTTP Tracking API as pure functions: request bytes in, accepted messages and rejections out.

The aiohttp handlers in producers/gateway.py only move bytes and await Kafka; every decision is here.

- writeKey: HTTP Basic username (Segment's libraries), else `writeKey` in the body; unknown -> 401.
- writeKey in the Authorization header: checked before the body is read (`header_write_key`), so an
  unknown key costs no body read, inflation or parse. In the body: checked after the bounded parse.
- Bodies may be gzip (Content-Encoding: gzip), of one member or several (read as one stream, as gzip
  does); the decompressed size of all of them is bounded, so a small gzip bomb is refused as over the
  limit rather than expanded, and anything after the last member is refused, never ignored.
- JSON integers are kept exact: one beyond 64 bits (which orjson would round to a float) reaches
  validation as an int, which refuses it (`invalid.unencodable`).
- A batch holds at most `Limits.batch_events` (2,500) events, or the whole request is refused; the reply
  counts the rejected events and lists the first REPORTED_REJECTIONS (100) of them (all are dead-lettered).
- /v1/track, identify, page, screen, group, alias take one event, whose type is the path's.
  /v1/batch (and /v1/import) take {"batch": [...]} with optional batch-level `context`,
  `integrations` and `sentAt`, which each event inherits unless it sets its own (Segment's rule).
- The gateway sets `receivedAt` (its clock), `messageId` where absent, and the event's `writeKey`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from schemas.envelope import CALL_TYPES
from schemas.validation import Limits, ValidationError, check_message, clean, loads_exact

SINGLE_PATHS: Final = CALL_TYPES
BATCH_PATHS: Final = ("batch", "import")
REPORTED_REJECTIONS: Final = 100  # rejections listed in a batch's reply; the count covers all of them


class RequestError(Exception):
    """The whole request is refused: `status` and a JSON body with `code` and `message`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"success": False, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Rejection:
    """One event of a batch that cannot be accepted, and why."""

    index: int
    reason: str
    message: str
    event: Any
    message_id: str | None = None  # the item's own, else the one the gateway gave it

    def report(self) -> dict[str, Any]:
        message_id = self.message_id
        if message_id is None and isinstance(self.event, dict):
            message_id = self.event.get("messageId")
        return {"index": self.index, "messageId": message_id if isinstance(message_id, str) else None,
                "reason": self.reason, "message": self.message}


@dataclass
class Parsed:
    write_key: str
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def read_body(raw: bytes, content_encoding: str | None, limit: int) -> Any:
    """Decompress (bounded) and parse JSON; RequestError 400 on anything else."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        raw = _gunzip(raw, limit)
    elif encoding != "identity":
        raise RequestError(400, "bad_encoding", f"unsupported Content-Encoding {encoding!r}")
    if len(raw) > limit:
        raise RequestError(400, "too_large", f"the body is {len(raw)} bytes, over the limit of {limit}")
    try:
        return loads_exact(raw)
    except (ValueError, RecursionError) as exc:
        raise RequestError(400, "bad_json", f"malformed JSON: {str(exc)[:120]}") from None


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Every member of a gzip stream, together at most `limit` bytes; 400 for anything after the last."""
    out: list[bytes] = []
    size = 0
    rest = raw
    while True:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            data = inflater.decompress(rest, limit - size + 1)
        except zlib.error:
            raise RequestError(400, "bad_gzip", "the body is not valid gzip" if not out else
                               f"gzip member {len(out) + 1} is not valid gzip") from None
        size += len(data)
        if size > limit or inflater.unconsumed_tail:
            raise RequestError(400, "too_large", f"the decompressed body is over the limit of {limit} bytes")
        if not inflater.eof:
            raise RequestError(400, "bad_gzip", "the gzip body is truncated")
        out.append(data)
        rest = inflater.unused_data
        if not rest:
            return b"".join(out)
        if rest[:2] != b"\x1f\x8b":
            raise RequestError(400, "bad_gzip", f"{len(rest)} bytes after the last gzip member are not gzip")


def basic_auth_user(header: str | None) -> str | None:
    """The username of an HTTP Basic Authorization header (Segment puts the writeKey there)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0] or None


def header_write_key(authorization: str | None, is_known: Callable[[str], bool]) -> str | None:
    """The writeKey of an Authorization header, checked before the body is read: 401 when unknown; None
    when the header carries none (the body's `writeKey` may, checked after its bounded parse)."""
    key = basic_auth_user(authorization)
    if key is not None and not is_known(key):
        raise RequestError(401, "auth", "unknown or disabled writeKey")
    return key


def parse_request(path_call: str, body: Any, auth_user: str | None, *, is_known: Callable[[str], bool],
                  received_at: str, new_id: Callable[[], str], limits: Limits) -> Parsed:
    """Authenticate and split a parsed body into accepted messages and rejections.

    Raises RequestError for what refuses the whole request (401 auth, 400 shape or size). For a single
    event endpoint an invalid event is a 400; in a batch it is a Rejection and the rest go ahead.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "bad_body", "the body must be a JSON object")
    key = auth_user or body.get("writeKey")
    if not isinstance(key, str) or not key:
        raise RequestError(401, "auth", "a writeKey is required (HTTP Basic username or body.writeKey)")
    if not is_known(key):
        raise RequestError(401, "auth", "unknown or disabled writeKey")
    parsed = Parsed(write_key=key)
    if path_call in SINGLE_PATHS:
        try:
            parsed.accepted.append(_accept({**body, "type": path_call}, {}, key, received_at=received_at,
                                           new_id=new_id, limits=limits))
        except ValidationError as exc:
            raise RequestError(400, exc.reason, exc.message) from None
        return parsed
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise RequestError(400, "bad_body", "batch must be a JSON array of events")
    if len(batch) > limits.batch_events:
        raise RequestError(400, "too_many_events", f"the batch holds {len(batch)} events, over the limit of "
                           f"{limits.batch_events} per request; send smaller batches")
    try:
        inherited = clean({k: body[k] for k in ("context", "integrations", "sentAt") if k in body}, "", limits)
    except ValidationError as exc:
        raise RequestError(400, exc.reason, exc.message) from None
    for index, event in enumerate(batch):
        given = _message_id_of(event, new_id)  # first, from the raw item: a rejection reports it too
        try:
            if not isinstance(event, dict):
                raise ValidationError("invalid.field_type", f"batch[{index}]", "an event must be a JSON object")
            parsed.accepted.append(_accept(event, inherited, key, received_at=received_at,
                                           new_id=functools.partial(str, given), limits=limits))
        except ValidationError as exc:
            parsed.rejected.append(Rejection(index, exc.reason, exc.message, event, given))
    return parsed


def batch_reply(parsed: Parsed) -> dict[str, Any]:
    """A batch's 200 body: the counts, and the first REPORTED_REJECTIONS rejections (all are dead-lettered)."""
    return {"success": True, "accepted": len(parsed.accepted), "rejectedCount": len(parsed.rejected),
            "rejected": [r.report() for r in parsed.rejected[:REPORTED_REJECTIONS]]}


def _message_id_of(event: Any, new_id: Callable[[], str]) -> str:
    """The item's messageId as the client sent it (a number as text), or a new one where it has none."""
    value = event.get("messageId") if isinstance(event, dict) else None
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return new_id()


def _accept(event: Mapping[str, Any], inherited: Mapping[str, Any], key: str, *, received_at: str,
            new_id: Callable[[], str], limits: Limits) -> dict[str, Any]:
    message: dict[str, Any] = clean(event, "", limits)
    for name, value in inherited.items():
        current = message.get(name)
        if current is None:
            message[name] = value
        elif isinstance(current, dict) and isinstance(value, dict):
            message[name] = {**value, **current}
    for name in ("userId", "anonymousId", "groupId", "previousId"):  # numeric ids, as Segment accepts them
        value = message.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            message[name] = str(value)
    message["writeKey"] = key
    message["receivedAt"] = received_at
    if not message.get("messageId"):
        message["messageId"] = new_id()
    check_message(message, limits)
    return message


def dead_letter_bytes(event: Any) -> bytes:
    """The rejected event as JSON for the invalid-events topic, without the writeKey it carried."""
    if isinstance(event, dict):
        event = {k: v for k, v in event.items() if k != "writeKey"}
    try:
        return orjson.dumps(event)
    except TypeError:
        return repr(event).encode("utf-8", "replace")
