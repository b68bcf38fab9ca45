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

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: Annotated[int, Field(ge=1, le=10_000)] | None = None   # default: the vendor's limit
    batch_bytes: Annotated[int, Field(ge=1_000, le=50_000_000)] | None = None
    linger_ms: Annotated[int, Field(ge=0, le=60_000)] = 200
    rate_per_s: Annotated[float, Field(gt=0)] | None = None             # requests per second, per process
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    max_retry_window_s: Annotated[float, Field(ge=0, le=30 * 86_400)] = 3 * 3600.0
    min_backoff_s: Annotated[float, Field(ge=0, le=600)] = 1.0
    max_backoff_s: Annotated[float, Field(gt=0, le=3600)] = 300.0
    retry_in_place_s: Annotated[float, Field(ge=0, le=3600)] = 10.0
    strict_order: bool = False
    connect_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    timeout_s: Annotated[float, Field(gt=0, le=300)] = 10.0             # read timeout
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4                 # partitions delivered in parallel
    # Requests of a batch under way at once per process, for its different users (one user's events go
    # one at a time, in order): a per-event webhook at 50 ms an answer gets ~64 / 0.05 s = 1,280 events/s.
    # 1: one request at a time (a batch's requests in order).
    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 64
    # Events older than this (by their corrected timestamp) are dead-lettered `vendor.too_old` instead of
    # being sent to be refused. Default: the vendor's own window (GA4 72 h, Meta CAPI 7 days).
    max_event_age_s: Annotated[float, Field(gt=0, le=10 * 365 * 86_400)] | None = None
