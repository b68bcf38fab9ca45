"""Poison pills: records that once crashed the stream worker. Each is refused or dead-lettered at the
record, with a reason (and the exception's type for what no check foresaw); the batch goes on."""

from __future__ import annotations

from typing import Any

import pytest

from schemas import EventCodec, Topics, deadletter_codec, outbound_codec
from schemas.config import parse_config
from schemas.playbook.transforms import format_time, parse_time
from schemas.validation import MAX_MS, MIN_MS, ValidationError, check_message
from streams.dedup import Deduplicator
from streams.metrics import WorkerMetrics
from streams.normalize import corrected_ms, iso_ms
from streams.router import Admitted, Rejected, Router, Source
from streams.worker import BatchRouter
from tests.conftest import replaces_compiled_names

CONFIG = """
pipelines: [{name: web, write_keys: [wk], integrations: [braze, amp]}]
integrations:
  - {name: braze, kind: braze, connection: {api_key: "${BRAZE_KEY}"}, playbook: "starter:braze"}
  - {name: amp, kind: amplitude, connection: {api_key: "${AMP_KEY}"}, playbook: "starter:amplitude"}
"""
CODEC = EventCodec()
YEAR_1_EAST = "0001-01-01T00:00:00+14:00"     # before 0001-01-01 in UTC
YEAR_9999_WEST = "9999-12-31T23:59:59-14:00"  # after 9999-12-31 in UTC


@pytest.fixture(scope="module")
def router() -> Router:
    import os

    os.environ.setdefault("BRAZE_KEY", "k")
    os.environ.setdefault("AMP_KEY", "k")
    return Router(parse_config(CONFIG), 1, Topics("t"))


def _source(event: dict[str, Any], offset: int = 5, timestamp_ms: int = 1_795_000_000_000) -> Source:
    return Source(CODEC.encode({"messageId": f"m{offset}", "writeKey": "wk", **event}), "t.raw", 0, offset,
                  timestamp_ms)


def _letter(output: Any) -> dict[str, Any]:
    return dict(deadletter_codec().decode(output.value))


@pytest.mark.parametrize("field", ["timestamp", "sentAt", "originalTimestamp", "receivedAt"])
@pytest.mark.parametrize("when", [YEAR_1_EAST, YEAR_9999_WEST])
def test_a_time_outside_utc_years_1_to_9999_is_refused_as_out_of_range(router: Router, field: str,
                                                                        when: str) -> None:
    outcome = router.admit(_source({"type": "track", "userId": "u1", "event": "t", field: when}))
    assert isinstance(outcome, Rejected) and outcome.reason == "invalid.timestamp", outcome
    assert field in outcome.message and "out of range" in outcome.message
    with pytest.raises(ValidationError, match="out of range"):
        check_message({"type": "track", "userId": "u1", "event": "t", field: when})


def test_the_edges_of_the_range_are_still_times(router: Router) -> None:
    for when in ("0001-01-01T00:00:00+00:00", "0001-01-01T14:00:00+14:00", "9999-12-31T23:59:59.999Z",
                 "9999-12-31T09:59:59-14:00"):
        outcome = router.admit(_source({"type": "track", "userId": "u1", "event": "t", "timestamp": when}))
        assert isinstance(outcome, Admitted), (when, outcome)
        assert outcome.event["timestamp"][:4] == ("0001" if when < "1" else "2026")  # 9999: a future time


def test_a_skew_that_lands_outside_the_range_takes_the_received_time() -> None:
    received = 1_795_000_000_000
    assert corrected_ms({"originalTimestamp": MIN_MS, "sentAt": MAX_MS}, received) == received
    assert corrected_ms({"originalTimestamp": MIN_MS + 1, "sentAt": MIN_MS}, MIN_MS) == MIN_MS + 1


def test_a_kafka_record_time_outside_the_range_is_refused(router: Router) -> None:
    outcome = router.admit(_source({"type": "track", "userId": "u1", "event": "t"}, timestamp_ms=2**62))
    assert isinstance(outcome, Rejected) and outcome.reason == "invalid.timestamp" and "receivedAt" in outcome.message


def test_iso_ms_refuses_what_it_cannot_format_with_a_value_error() -> None:
    assert iso_ms(MIN_MS) == "0001-01-01T00:00:00.000Z" and iso_ms(MAX_MS) == "9999-12-31T23:59:59.999Z"
    for ms in (MIN_MS - 1, MAX_MS + 1, -(2**62)):
        with pytest.raises(ValueError, match="outside"):
            iso_ms(ms)


@pytest.mark.parametrize("fmt", ["date", "iso8601", "unix_ms", "unix_s", "unix_micros", "%Y"])
@pytest.mark.parametrize("when", [YEAR_1_EAST, YEAR_9999_WEST, 1e308, -1e308, 2**80])
def test_a_timestamp_transform_gives_none_for_a_time_it_cannot_hold(fmt: str, when: Any) -> None:
    assert format_time(when, fmt) is None
    assert parse_time(when) is None


def test_a_braze_identify_with_a_year_1_birthday_is_routed_without_it(router: Router) -> None:
    admitted = router.admit(_source({"type": "identify", "userId": "u1", "traits": {"birthday": YEAR_1_EAST}}))
    assert isinstance(admitted, Admitted)
    routed = router.route(admitted)
    assert routed.failed == []
    braze = [o for o in routed.outputs if o.integration == "braze"]
    assert len(braze) == 1
    import orjson

    payload = orjson.loads(outbound_codec().decode(braze[0].value)["payload"])
    assert payload.get("dob") is None and payload["external_id"] == "u1"


@replaces_compiled_names
def test_an_exception_no_check_foresaw_in_admission_is_dead_lettered_with_its_type(
        router: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_event: Any, _limits: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr("streams.router.check_decoded", explode)
    outcome = router.admit(_source({"type": "track", "userId": "u1", "event": "t"}, offset=9))
    assert isinstance(outcome, Rejected) and outcome.reason == "error.admit"
    letter = _letter(outcome.dead_letter)
    assert letter["reason"] == "error.admit" and letter["message"].startswith("OverflowError: date value out of range")
    assert "in explode" in letter["message"] and letter["sourceOffset"] == 9 and letter["originalBytes"]


@replaces_compiled_names
@pytest.mark.parametrize("error", [KeyError("email"), AttributeError("x"), RecursionError("deep"), OverflowError()])
def test_an_exception_in_one_playbook_dead_letters_that_integration_only(
        router: Router, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    admitted = router.admit(_source({"type": "track", "userId": "u1", "event": "Signed Up"}))
    assert isinstance(admitted, Admitted)

    def explode(_event: Any) -> Any:
        raise error

    monkeypatch.setattr(router.routes["braze"], "decide", explode)
    routed = router.route(admitted)
    assert [o.integration for o in routed.outputs] == ["amp"]
    assert [(name, reason) for name, reason, _ in routed.failed] == [("braze", "playbook.error")]
    letter = _letter(routed.failed[0][2])
    assert letter["message"].startswith(type(error).__name__) and letter["integration"] == "braze"


class _Holder:
    router: Router | None = None


@replaces_compiled_names
def test_a_record_whose_routing_raises_is_dead_lettered_and_the_batch_goes_on(
        router: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    real_route = router.route

    def route(admitted: Admitted, *args: Any, **kwargs: Any) -> Any:
        if admitted.event.get("event") == "poison":
            raise AttributeError("'NoneType' object has no attribute 'get'")
        return real_route(admitted, *args, **kwargs)

    monkeypatch.setattr(router, "route", route)
    dedup = Deduplicator({}, "log", 60, per_key=False)
    batches = BatchRouter(_Holder(), None, dedup, WorkerMetrics())  # type: ignore[arg-type]
    sources = [_source({"type": "track", "userId": "u1", "event": name}, offset=i)
               for i, name in enumerate(["good", "poison", "good again"])]
    batch = batches.prepare(sources, router)
    letters = [_letter(o) for o in batch.outputs if o.topic == "t.invalid"]
    assert [(x["reason"], x["stage"], x["sourceOffset"]) for x in letters] == [("error.route", "route", 1)]
    assert letters[0]["message"].startswith("AttributeError")
    assert [offset for offset in (o for o in batch.marks)] == [(0, "web\x1fm0"), (0, "web\x1fm2")]  # not marked
    assert sum(1 for o in batch.outputs if o.topic != "t.invalid") == 4  # two integrations x two good events
    assert batch.tally.invalid[("web", "-", "error.route")] == 1
