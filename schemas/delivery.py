"""An integration's delivery policy: what the forwarder reads from `integrations[].delivery`."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class Delivery(BaseModel):
    """How the forwarder delivers: batching (capped by the vendor's own limits), rate, retries.

    An event is given up only when both budgets are spent: `max_attempts` attempts and
    `max_retry_window_s` since its first attempt (3 and 3 hours, as RudderStack does). A wait longer
    than `retry_in_place_s` moves the event to the integration's retry topic, so one failing batch
    does not hold its partition for hours, unless `strict_order` says a user's events must never
    overtake each other (then the partition waits).

    `linger_ms` gathers a batch for vendors that take many events a request; for a per-event vendor (a
    webhook without `batch`) it only delays each event, so there it is 0 unless set."""

    # a field's docstring is its description: docs/configuration.md is made from them (eventrouter/reference.py)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    batch_size: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """Most events per batch (default: the vendor's limit, which also caps it)."""
    batch_bytes: Annotated[int, Field(ge=1_000, le=50_000_000)] | None = None
    """Most bytes per request (default: the vendor's limit, which also caps it)."""
    linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 200
    """How long a batch gathers events; 0 for a per-event vendor (a webhook without `batch`) unless set."""
    rate_per_s: Annotated[float, Field(gt=0)] | None = None
    """Requests per second, per process (a token bucket that halves on a 429); unset: open until a 429."""
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    """Attempts before an event is given up, together with `max_retry_window_s`."""
    max_retry_window_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 3 * 3600.0
    """Seconds since the first attempt before an event is given up, together with `max_attempts`."""
    min_backoff_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    """The first retry's backoff (exponential, full jitter; never before Retry-After)."""
    max_backoff_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    """The longest backoff."""
    retry_in_place_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    """A longer wait sends the event to `<prefix>.retry.<integration>` instead of holding the partition."""
    strict_order: bool = False
    """true: retried events wait in place, so nothing of their partition overtakes them."""
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    """Seconds to connect to the vendor."""
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0
    """Seconds to read the vendor's answer."""
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    """Partitions delivered in parallel, per process."""
    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 64
    """Requests under way at once per process, for different users (one user's go one at a time, in order):
    a per-event webhook answering in 50 ms gets ~64 / 0.05 s = 1,280 events/s. 1: one request at a time."""
    max_event_age_s: Annotated[float, Field(gt=0, le=10 * 365 * 86_400)] | None = None
    """Older events (by their corrected timestamp) are dead-lettered `vendor.too_old` instead of being sent
    to be refused (default: the vendor's own window, GA4 72 h, Meta CAPI 7 days)."""
