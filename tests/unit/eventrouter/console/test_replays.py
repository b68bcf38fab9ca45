"""A replay's window from the form: a time window or offsets, a rate in bounds, and a clear reason otherwise."""

from __future__ import annotations

import pytest

from eventrouter.console.replays import DEFAULT_RATE, Window, window_of
from schemas.errors import ConfigurationError

NOW = 1_800_000_000_000


def test_a_time_window_or_offsets_and_a_rate() -> None:
    assert window_of({"integration": "amp", "since": "2h", "until": "1h"}, {"amp"}, NOW) == \
        Window("amp", NOW - 7_200_000, NOW - 3_600_000, rate=DEFAULT_RATE)
    assert window_of({"integration": "amp", "from_offset": "10", "to_offset": "20", "rate": "50"}, {"amp"}, NOW) == \
        Window("amp", None, None, 10, 20, 50.0)
    assert "offsets 10 to 20 at 50/s" in Window("amp", None, None, 10, 20, 50.0).describe()


@pytest.mark.parametrize(("form", "says"), [
    ({"integration": "nope", "since": "1h"}, "no integration named 'nope'"),
    ({"integration": "amp"}, "give a time window"),
    ({"integration": "amp", "since": "1h", "from_offset": "3"}, "not both"),
    ({"integration": "amp", "since": "1h", "until": "2h"}, "ends before it starts"),
    ({"integration": "amp", "since": "last tuesday"}, "since:"),
    ({"integration": "amp", "from_offset": "-4"}, "a whole number"),
    ({"integration": "amp", "since": "1h", "rate": "fast"}, "rate: events a second"),
    ({"integration": "amp", "since": "1h", "rate": "1e9"}, "between 1 and"),
])
def test_a_wrong_window_says_what_is_wrong(form: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        window_of(form, {"amp"}, NOW)
