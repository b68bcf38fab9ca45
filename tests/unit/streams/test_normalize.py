"""Event time in epoch milliseconds: exact parsing and Segment's clock-skew correction."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from schemas.validation import epoch_ms
from streams.normalize import EPOCH, corrected_ms, iso_ms

MS = dt.timedelta(milliseconds=1)


def test_epoch_ms_is_exact_to_the_millisecond_floored() -> None:
    rng = random.Random(9)
    for _ in range(5000):
        moment = EPOCH + dt.timedelta(microseconds=rng.choice([rng.randrange(-6 * 10**16, 2 * 10**17),
                                                                rng.randrange(-2**32 * 10**6, 2**32 * 10**6)]))
        offset = dt.timezone(dt.timedelta(minutes=rng.randrange(-14 * 60, 14 * 60 + 1)))
        text = moment.astimezone(offset).isoformat()
        assert epoch_ms(text) == (moment - EPOCH) // MS, text
    assert epoch_ms("2026-11-26T10:00:00.123Z") == 1795687200123
    assert epoch_ms("2026-11-26T10:00:00.123999") == 1795687200123  # naive: UTC
    assert iso_ms(epoch_ms("2026-11-26T11:00:00.5+01:00")) == "2026-11-26T10:00:00.500Z"


def test_the_sdk_form_read_from_its_cached_second_is_what_the_full_parse_gives() -> None:
    """`2026-11-26T10:00:00.123Z` takes a shortcut (the second parsed once); it must agree, and refuse alike."""
    rng = random.Random(10)
    for _ in range(5000):
        moment = EPOCH + dt.timedelta(milliseconds=rng.randrange(-3 * 10**13, 2 * 10**14))  # 1000-8300
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        assert epoch_ms(text) == (moment - EPOCH) // MS == epoch_ms(text.replace("Z", "+00:00")), text
        assert iso_ms(epoch_ms(text)) == text
    for bad in ("2026-11-26T10:00:00.1x3Z", "2026-13-26T10:00:00.123Z", "20261126T100000.123.456Z",
                "2026-11-26T10:00:00.\u0661\u0662\u0663Z", "2026-11-26T25:00:00.123Z"):
        with pytest.raises(ValueError):
            epoch_ms(bad)


def test_clock_skew_is_cancelled_and_the_future_bounded() -> None:
    received = 1_000_000_000
    # the sender's clock 2 h ahead: sent and original both 2 h late, the event 3 s before sending
    skewed = {"originalTimestamp": received + 7_200_000 - 3000, "sentAt": received + 7_200_000}
    assert corrected_ms(skewed, received) == received - 3000
    assert corrected_ms({"timestamp": 5, **skewed}, received) == 5  # explicit timestamp wins (backfills)
    assert corrected_ms({"originalTimestamp": received - 10}, received) == received - 10
    assert corrected_ms({}, received) == received
    assert corrected_ms({"timestamp": received + 3_600_001}, received, 3600) == received
    assert corrected_ms({"timestamp": received + 3_600_000}, received, 3600) == received + 3_600_000


def _ms(text: str) -> int:
    return (dt.datetime.fromisoformat(text) - EPOCH) // dt.timedelta(milliseconds=1)


@pytest.mark.parametrize(("sent", "original"), [
    ("3000-01-01T00:00:00+00:00", "2026-11-26T10:00:00+00:00"),  # a millennium "in the queue": year 1052
    ("2026-11-26T10:00:00+00:00", "1800-01-01T00:00:00+00:00"),
    ("9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00"),
])
def test_a_skew_correction_far_into_the_past_falls_back_to_received_at(sent: str, original: str) -> None:
    received = _ms("2026-11-26T10:00:00+00:00")
    assert corrected_ms({"sentAt": _ms(sent), "originalTimestamp": _ms(original)}, received) == received


def test_a_skew_correction_within_the_bounds_is_kept() -> None:
    received = _ms("2026-11-26T10:00:00+00:00")
    month = 30 * 86_400_000
    assert corrected_ms({"sentAt": _ms("2001-01-31T00:00:00+00:00"),
                         "originalTimestamp": _ms("2001-01-01T00:00:00+00:00")}, received) == received - month
    assert corrected_ms({"sentAt": 0, "originalTimestamp": 3_600_000}, received) == received + 3_600_000
    assert corrected_ms({"sentAt": 0, "originalTimestamp": 3_600_001}, received) == received  # the future bound
