"""What a user types for a replay's range, read as epoch ms."""

from __future__ import annotations

import pytest

from eventrouter.ops.ranges import Span, parse_when
from schemas.errors import ConfigurationError

NOW = 1_795_000_000_000


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", NOW - 7_200_000), ("90m", NOW - 5_400_000), ("3d", NOW - 3 * 86_400_000), ("1.5h", NOW - 5_400_000),
    ("45s", NOW - 45_000), ("1795000000000", 1_795_000_000_000),
    ("2026-11-26T10:00:00Z", 1_795_687_200_000), ("2026-11-26T10:00:00+01:00", 1_795_683_600_000),
    ("2026-11-26T10:00:00", 1_795_687_200_000),  # no zone: UTC
])
def test_times_durations_ago_and_epoch_ms(text: str, expected: int) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-2h", "", "2026-13-01"])
def test_anything_else_is_a_clear_error(text: str) -> None:
    with pytest.raises(ConfigurationError, match="ISO-8601"):
        parse_when(text, NOW)


def test_a_span_counts_its_records_and_skips_empty_partitions() -> None:
    span = Span("t", {0: 5, 1: 10, 2: 3}, {0: 9, 1: 10, 2: 2})
    assert span.count == 4 and span.partitions() == [0]
