"""Event time as the router sees it: Segment's clock-skew correction, bounded. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from schemas.validation import parse_timestamp

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SECONDS: dict[int, str] = {}


def epoch_ms(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second seen (the router's
    hot path formats two times per event)."""
    seconds, millis = divmod(ms, 1000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if len(_SECONDS) > 100_000:
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = (EPOCH + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")[:19]
    return f"{prefix}.{millis:03d}Z"


def _iso(moment: dt.datetime) -> str:
    return iso_ms(epoch_ms(moment))


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        return None


def corrected_timestamp(event: Mapping[str, Any], received: dt.datetime, max_future_s: int = 3600) -> dt.datetime:
    """An explicit `timestamp` is authoritative (historical imports); otherwise
    `timestamp = receivedAt - (sentAt - originalTimestamp)`, which cancels the sender's clock skew.
    A time later than receivedAt + max_future_s is taken as receivedAt."""
    explicit = _time(event.get("timestamp"))
    original, sent = _time(event.get("originalTimestamp")), _time(event.get("sentAt"))
    if explicit is not None:
        moment = explicit
    elif original is not None and sent is not None:
        moment = received - (sent - original)
    else:
        moment = original or received
    if moment > received + dt.timedelta(seconds=max_future_s):
        return received
    return moment


def normalized(event: Mapping[str, Any], received: dt.datetime | None = None,
               max_future_s: int = 3600) -> dict[str, Any]:
    """A copy of `event` with receivedAt (kept if set) and the corrected `timestamp`, as ISO-8601 UTC."""
    received = _time(event.get("receivedAt")) or received or dt.datetime.now(dt.UTC)
    out = dict(event)
    out["receivedAt"] = event.get("receivedAt") if isinstance(event.get("receivedAt"), str) else _iso(received)
    out["timestamp"] = _iso(corrected_timestamp(event, received, max_future_s))
    return out
