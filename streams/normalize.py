"""Event time as the router sees it: Segment's clock-skew correction, bounded. Pure; times are epoch
milliseconds (the router's hot path: no datetime arithmetic per event)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from schemas.validation import epoch_ms, in_range

EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_SECONDS: dict[int, str] = {}


def iso_ms(ms: int) -> str:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second seen (the router's
    hot path formats two times per event). ValueError for a time outside the years 1-9999
    (`schemas.validation.in_range`): the router refuses such times before it formats them."""
    seconds, millis = divmod(ms, 1000)
    prefix = _SECONDS.get(seconds)
    if prefix is None:
        if not in_range(ms):
            raise ValueError(f"{ms} ms from the epoch is outside the years 1-9999")
        if len(_SECONDS) > 10_000:  # ~1.5 MB; live traffic uses a few seconds, a backfill churns it
            _SECONDS.clear()
        prefix = _SECONDS[seconds] = (EPOCH + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")[:19]
    return prefix + _MILLIS[millis]


_MILLIS: Final = [f".{ms:03d}Z" for ms in range(1000)]


MAX_PAST_S: Final = 90 * 86400  # how far back a skew-corrected time may fall (offline mobile queues: days, not years)


def corrected_ms(stamps: Mapping[str, int], received_ms: int, max_future_s: int = 3600,
                 max_past_s: int = MAX_PAST_S) -> int:
    """The event's time from its parsed timestamps (`timestamp`, `originalTimestamp`, `sentAt`, as epoch
    ms). An explicit `timestamp` is authoritative (historical imports); otherwise
    `timestamp = receivedAt - (sentAt - originalTimestamp)`, which cancels the sender's clock skew.
    A time later than receivedAt + max_future_s, or outside the years 1-9999, is taken as receivedAt; so is
    a skew-corrected time more than max_past_s before receivedAt (sentAt in year 3000 with an
    originalTimestamp of today would otherwise give a time a millennium back). An explicit `timestamp`
    may lie any distance back (historical imports)."""
    explicit = stamps.get("timestamp")
    original, sent = stamps.get("originalTimestamp"), stamps.get("sentAt")
    if explicit is not None:
        moment = explicit
    elif original is not None and sent is not None:
        moment = received_ms - (sent - original)
        if moment < received_ms - max_past_s * 1000:
            return received_ms
    else:
        moment = original if original is not None else received_ms
    if moment > received_ms + max_future_s * 1000 or not in_range(moment):  # a skew past year 1 or 9999 too
        return received_ms
    return moment


def _stamps(event: Mapping[str, Any]) -> dict[str, int]:
    """The timestamps of `event` that parse, as epoch ms (the rest left out)."""
    out = {}
    for field in ("timestamp", "originalTimestamp", "sentAt", "receivedAt"):
        value = event.get(field)
        if isinstance(value, str):
            try:
                out[field] = epoch_ms(value)
            except (ValueError, OverflowError, OSError):
                continue
    return out


def normalized(event: Mapping[str, Any], received: dt.datetime | None = None,
               max_future_s: int = 3600) -> dict[str, Any]:
    """A copy of `event` with receivedAt (kept if set) and the corrected `timestamp`, as ISO-8601 UTC."""
    stamps = _stamps(event)
    received_ms = stamps.get("receivedAt")
    if received_ms is None:
        received_ms = ((received or dt.datetime.now(dt.UTC)) - EPOCH) // dt.timedelta(milliseconds=1)
    out = dict(event)
    out["receivedAt"] = event.get("receivedAt") if isinstance(event.get("receivedAt"), str) else iso_ms(received_ms)
    out["timestamp"] = iso_ms(corrected_ms(stamps, received_ms, max_future_s))
    return out
