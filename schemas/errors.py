"""The project's error tree: one root, then classes by how an error is handled."""

from __future__ import annotations


class EventRouterError(Exception):
    """Root of every error eventrouter raises on purpose."""


class ConfigurationError(EventRouterError):
    """Bad configuration or environment: refuse to start, report every problem at once."""


class RetryableError(EventRouterError):
    """A transient failure: try again, never sooner than `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None,
                 body: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status
        self.body = body


class FinalError(EventRouterError):
    """A failure that retrying cannot fix: dead-letter the event with `reason`."""

    def __init__(self, reason: str, message: str, status: int | None = None, body: str | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.status = status
        self.body = body


class DecodeError(FinalError):
    """Bytes that are not a record of ours. `reason` is one of DECODE_REASONS."""


class EncodeError(FinalError, ValueError):
    """A value that cannot be encoded with the contract's schema; names the field."""


DECODE_REASONS = (
    "decode.empty",           # no bytes at all
    "decode.bad_magic",       # neither single-object (C3 01) nor Confluent (00) framing
    "decode.truncated",       # framing or body shorter than it claims
    "decode.unknown_schema",  # fingerprint / schema id we do not know and cannot fetch
    "decode.corrupt",         # body does not parse with the writer schema, or has trailing bytes
    "decode.schema_mismatch", # writer schema cannot be resolved to the reader schema
)
