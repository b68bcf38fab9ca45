"""The gateway's decisions, without a server: auth, bodies, batches, rejections."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest

from producers.tracking_api import (
    REPORTED_REJECTIONS,
    RequestError,
    basic_auth_user,
    batch_reply,
    dead_letter_bytes,
    header_write_key,
    parse_request,
    read_body,
)
from schemas.validation import Limits

LIMITS = Limits()


def parse(call: str, body: Any, auth: str | None = "wk") -> Any:
    ids = iter(f"gen-{i}" for i in range(10_000))
    return parse_request(call, body, auth, is_known={"wk"}.__contains__, received_at="2026-11-26T10:00:00.000Z",
                         new_id=lambda: next(ids), limits=LIMITS)


def test_basic_auth_username_is_the_write_key() -> None:
    header = "Basic " + base64.b64encode(b"wk_live:").decode()
    assert basic_auth_user(header) == "wk_live"
    assert basic_auth_user("Basic !!!") is None
    assert basic_auth_user("Bearer x") is None
    assert basic_auth_user(None) is None


def test_write_key_in_body_when_no_auth_header() -> None:
    parsed = parse("track", {"writeKey": "wk", "userId": "u", "event": "E"}, auth=None)
    assert parsed.accepted[0]["writeKey"] == "wk"


@pytest.mark.parametrize("auth", [None, "other"])
def test_missing_or_unknown_write_key_is_401(auth: str | None) -> None:
    with pytest.raises(RequestError) as caught:
        parse("track", {"userId": "u", "event": "E"}, auth=auth)
    assert caught.value.status == 401
    assert "other" not in caught.value.message  # the key is never echoed


def test_single_event_gets_type_from_path_and_gateway_fields() -> None:
    event = parse("identify", {"userId": 7, "traits": {"a": 1}}).accepted[0]
    assert event["type"] == "identify"
    assert event["userId"] == "7"
    assert event["receivedAt"] == "2026-11-26T10:00:00.000Z"
    assert event["messageId"] == "gen-0"


def test_invalid_single_event_is_400_with_reason() -> None:
    with pytest.raises(RequestError) as caught:
        parse("track", {"userId": "u"})
    assert (caught.value.status, caught.value.code) == (400, "invalid.missing_field")


def test_batch_inherits_context_integrations_and_sent_at_and_reports_rejections() -> None:
    body = {"batch": [{"type": "track", "userId": "u", "event": "A", "messageId": "m1", "context": {"ip": "1.2.3.4"}},
                      {"type": "track", "event": "B", "messageId": "m2"},
                      "not an object",
                      {"type": "page", "anonymousId": "a", "sentAt": "2026-01-01T00:00:00Z"}],
            "context": {"ip": "9.9.9.9", "locale": "fr-FR"}, "integrations": {"All": False},
            "sentAt": "2026-11-26T09:59:59.000Z"}
    parsed = parse("batch", body)
    first, page = parsed.accepted
    assert first["context"] == {"ip": "1.2.3.4", "locale": "fr-FR"}
    assert first["integrations"] == {"All": False}
    assert first["sentAt"] == "2026-11-26T09:59:59.000Z"
    assert page["sentAt"] == "2026-01-01T00:00:00Z"
    assert [r.report() for r in parsed.rejected] == [
        {"index": 1, "messageId": "m2", "reason": "invalid.identity",
         "message": "userId: userId or anonymousId is required"},
        {"index": 2, "messageId": "gen-0", "reason": "invalid.field_type",
         "message": "batch[2]: an event must be a JSON object"}]
    assert page["messageId"] == "gen-1"


def test_every_rejection_in_a_batch_reports_a_message_id_whatever_fails() -> None:
    big = {"s": "x" * 40_000}
    body = {"batch": [{"type": "track", "userId": "u", "event": "A", "messageId": "own-1", "properties": big},
                      {"type": "track", "userId": "u", "event": "A", "properties": big},
                      {"type": "track", "userId": "u", "event": "A", "messageId": 42, "properties": big},
                      {"type": "nonsense", "messageId": "own-2", "properties": {"a": {"b": "y" * 20_000}}},
                      [1, 2]]}
    parsed = parse("batch", body)
    assert parsed.accepted == []
    assert [(r.report()["index"], r.report()["messageId"]) for r in parsed.rejected] == [
        (0, "own-1"), (1, "gen-0"), (2, "42"), (3, "own-2"), (4, "gen-1")]


def test_batch_must_be_a_list() -> None:
    with pytest.raises(RequestError, match="batch must be a JSON array"):
        parse("batch", {"batch": {"type": "track"}})


def test_gzip_body_is_read_and_a_gzip_bomb_refused() -> None:
    assert read_body(gzip.compress(b'{"a": 1}'), "gzip", 100) == {"a": 1}
    with pytest.raises(RequestError) as caught:
        read_body(gzip.compress(b" " * 10_000_000), "gzip", 500 * 1024)
    assert caught.value.code == "too_large"
    with pytest.raises(RequestError, match="not valid gzip"):
        read_body(b"plain", "gzip", 100)
    with pytest.raises(RequestError, match="truncated"):
        read_body(gzip.compress(b'{"a": 1}')[:-6], "gzip", 100)


@pytest.mark.parametrize(("raw", "code"), [(b"{", "bad_json"), (b"x" * 101, "too_large"), (b'{"a": NaN}', "bad_json")])
def test_malformed_or_oversized_body_is_400(raw: bytes, code: str) -> None:
    with pytest.raises(RequestError) as caught:
        read_body(raw, None, 100)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_dead_letter_bytes_drop_the_write_key() -> None:
    assert orjson.loads(dead_letter_bytes({"writeKey": "secret", "event": "E"})) == {"event": "E"}


def test_a_batch_over_the_event_cap_is_refused_whole() -> None:
    with pytest.raises(RequestError) as caught:
        parse("batch", {"batch": [1] * (LIMITS.batch_events + 1)})
    assert (caught.value.status, caught.value.code) == (400, "too_many_events")
    assert str(LIMITS.batch_events) in caught.value.message


def test_a_batch_at_the_cap_is_parsed_and_its_reply_stays_small() -> None:
    parsed = parse("batch", {"batch": [1] * LIMITS.batch_events})
    assert len(parsed.rejected) == LIMITS.batch_events
    reply = batch_reply(parsed)
    assert reply["accepted"] == 0
    assert reply["rejectedCount"] == LIMITS.batch_events
    assert len(reply["rejected"]) == REPORTED_REJECTIONS
    assert reply["rejected"][0]["index"] == 0
    assert len(orjson.dumps(reply)) < 20_000


def test_the_reply_lists_every_rejection_under_the_report_cap() -> None:
    parsed = parse("batch", {"batch": [{"type": "track", "userId": "u", "event": "A"}, 1]})
    assert batch_reply(parsed) == {"success": True, "accepted": 1, "rejectedCount": 1,
                                   "rejected": [r.report() for r in parsed.rejected]}


def test_a_header_write_key_is_checked_before_the_body() -> None:
    assert header_write_key(None, {"wk"}.__contains__) is None  # the body may carry it
    assert header_write_key("Basic " + base64.b64encode(b"wk:").decode(), {"wk"}.__contains__) == "wk"
    with pytest.raises(RequestError) as caught:
        header_write_key("Basic " + base64.b64encode(b"other:").decode(), {"wk"}.__contains__)
    assert caught.value.status == 401


def test_every_gzip_member_is_read() -> None:
    body = gzip.compress(b'{"batch": [1,') + gzip.compress(b" 2]}")
    assert read_body(body, "gzip", 100) == {"batch": [1, 2]}


def test_gzip_members_together_are_bounded_by_the_limit() -> None:
    member = gzip.compress(b" " * 60)
    with pytest.raises(RequestError) as caught:
        read_body(gzip.compress(b"{}") + member + member, "gzip", 100)
    assert caught.value.code == "too_large"


@pytest.mark.parametrize("tail", [b"garbage", b"\x1f\x8bnot gzip", b"\x00" * 8])
def test_a_gzip_member_followed_by_anything_else_is_refused(tail: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        read_body(gzip.compress(b'{"a": 1}') + tail, "gzip", 100)
    assert (caught.value.status, caught.value.code) == (400, "bad_gzip")


def test_integers_beyond_64_bits_are_refused_not_rounded() -> None:
    body = read_body(b'{"batch": [{"type": "track", "userId": "u", "event": "A", "properties": {"n": %d}},'
                     b' {"type": "track", "userId": "u", "event": "A", "properties": {"n": %d, "id": "%s"}}]}'
                     % (2**70, 2**63 - 1, b"1" * 40), None, 1000)
    parsed = parse("batch", body)
    assert [(r.index, r.reason, r.message) for r in parsed.rejected] == [
        (0, "invalid.unencodable", "properties.n: integer outside the 64-bit range")]
    assert parsed.accepted[0]["properties"] == {"n": 2**63 - 1, "id": "1" * 40}
    assert read_body(b'{"a": -%d}' % 2**70, None, 100) == {"a": -(2**70)}  # exact: clean() refuses it
    assert read_body(b'{"a": 1e300, "b": 12345678901234567890123.5}', None, 100) == \
        {"a": 1e300, "b": 12345678901234567890123.5}  # floats stay floats


@pytest.mark.parametrize("field", ["userId", "anonymousId", "messageId", "event", "groupId", "previousId"])
@pytest.mark.parametrize("char", ["\x00", "\n", "\x1b", "\x7f", "\x85"])
def test_control_characters_in_ids_and_event_names_are_refused(field: str, char: str) -> None:
    event = {"type": "track", "userId": "u", "anonymousId": "a", "messageId": "m", "event": "E"}
    event[field] = f"x{char}y"
    with pytest.raises(RequestError) as caught:
        parse("track", event)
    assert (caught.value.status, caught.value.code) == (400, "invalid.control_character")
    assert field in caught.value.message
