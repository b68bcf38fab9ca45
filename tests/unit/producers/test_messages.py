"""SDK message building: analytics-python's semantics, with errors instead of silent drops."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
import uuid

import pytest

from producers.messages import Clock, build, message_id
from schemas.validation import ValidationError

NOW = dt.datetime(2026, 11, 26, 10, 0, 0, 123456, tzinfo=dt.UTC)


def test_sets_message_id_original_timestamp_and_sent_at() -> None:
    message = build("track", {"userId": "u", "event": "E"}, write_key="wk", now=NOW)
    assert uuid.UUID(message["messageId"]).version == 4
    assert message["originalTimestamp"] == message["sentAt"] == "2026-11-26T10:00:00.123+00:00"
    assert "timestamp" not in message  # the router corrects skew from originalTimestamp/sentAt
    assert message["writeKey"] == "wk"
    assert message["context"]["library"]["name"] == "eventrouter-python"


def test_explicit_timestamp_is_authoritative_and_naive_means_utc() -> None:
    message = build("track", {"userId": "u", "event": "E", "timestamp": dt.datetime(2020, 5, 1, 12)},
                    write_key=None, now=NOW)
    assert message["timestamp"] == message["originalTimestamp"] == "2020-05-01T12:00:00.000+00:00"
    assert message["sentAt"] == "2026-11-26T10:00:00.123+00:00"


def test_numeric_and_uuid_ids_become_text_and_caller_message_id_is_kept() -> None:
    message = build("group", {"userId": 42, "groupId": uuid.UUID(int=1), "messageId": "mine"}, write_key=None,
                    now=NOW)
    assert (message["userId"], message["groupId"], message["messageId"]) == (
        "42", "00000000-0000-0000-0000-000000000001", "mine")


def test_caller_context_is_kept_and_library_added() -> None:
    message = build("page", {"anonymousId": "a", "name": "Home", "context": {"ip": "203.0.113.1"}},
                    write_key=None, now=NOW)
    assert message["context"]["ip"] == "203.0.113.1"
    assert "library" in message["context"]


@pytest.mark.parametrize(("call", "fields", "words"), [
    ("track", {"userId": "u"}, "event: track requires event"),
    ("track", {"event": "E"}, "userId or anonymousId is required"),
    ("track", {"userId": "u", "event": "E", "properties": "nope"}, "properties: must be a dict"),
    ("track", {"userId": 1.5, "event": "E"}, "userId: must be a string or a number"),
    ("track", {"userId": "u", "event": "E", "timestamp": "soon"}, "timestamp: must be a datetime"),
    ("identify", {"userId": "u", "traits": {"bad": "\udcff"}}, "traits.bad: text with a lone surrogate"),
    ("track", {"userId": "u", "event": "E", "properties": {"x": "y" * 40_000}}, "limit of 16384"),
])
def test_bad_calls_raise_naming_the_field(call: str, fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(words)):
        build(call, fields, write_key=None, now=NOW)


def test_message_ids_are_version_4_uuids_and_distinct() -> None:
    ids = {message_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in list(ids)[:100])


def test_clock_gives_iso_utc_milliseconds_and_moves_on() -> None:
    clock = Clock()
    first = clock.now()
    parsed = dt.datetime.fromisoformat(first)
    assert parsed.tzinfo is not None and abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first)
    time.sleep(0.002)
    assert clock.now() > first
    assert build("track", {"userId": "u", "event": "E"}, write_key=None, now=first)["sentAt"] == first


def test_a_forked_child_never_repeats_the_parents_message_ids() -> None:
    message_id()  # the parent's pool is filled now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pool must start afresh, not where the parent's is
        try:
            os.write(write, "\n".join(message_id() for _ in range(50)).encode())
        finally:  # never return into pytest
            os._exit(0)
    os.close(write)
    _pid, status = os.waitpid(pid, 0)
    assert status == 0, status
    with os.fdopen(read) as pipe:
        child_ids = set(pipe.read().split("\n"))
    assert len(child_ids) == 50
    assert child_ids.isdisjoint(message_id() for _ in range(50))


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                  dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=14)))])
def test_a_timestamp_outside_utc_years_1_to_9999_is_refused_at_the_call(when: object) -> None:
    from producers import Analytics

    with pytest.raises(ValidationError, match="out of range") as caught:
        build("track", {"userId": "u", "event": "E", "timestamp": when}, write_key=None, now=NOW)
    assert caught.value.reason == "invalid.timestamp"
    analytics = Analytics("wk", "127.0.0.1:9", send=False)
    with pytest.raises(ValidationError, match="out of range"):
        analytics.track("u", "E", timestamp=when)
