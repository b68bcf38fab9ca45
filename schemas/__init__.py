"""The contract every part shares: the Avro schemas and codec, the event envelope and its validation, topic
names, the dead-letter record, the error tree, the config model and the destination catalogue.

Below it, each in a home of its own: `schemas/playbook/` (the playbook language), `schemas/runtime/` (what
every process shares: Kafka settings, config revisions, the crash guard). The compiled fast paths of the
codec are `compiled*.py` and `direct*.py` (docs/decisions.md, "the speed layer")."""

from __future__ import annotations

from schemas.native import use_compiled

use_compiled(__name__, __path__)  # before any module of the package is imported

from collections.abc import Iterable, Mapping
from typing import Any

from schemas.codec import AvroCodec, history, load_schema, schema_fingerprint
from schemas.compat import full_problems, reader_problems
from schemas.envelope import CALL_TYPES, from_lean_record, from_record, to_record
from schemas.errors import (
    DECODE_REASONS,
    ConfigurationError,
    DecodeError,
    EncodeError,
    EventRouterError,
    FinalError,
    RetryableError,
)
from schemas.registry import SchemaRegistryClient
from schemas.topics import Topics


class EventCodec:
    """Segment message dicts <-> framed Avro `Event` bytes."""

    def __init__(self, registry: SchemaRegistryClient | None = None) -> None:
        self.avro = AvroCodec(load_schema("event"), history("event"), registry=registry, omit_null=True)

    def encode(self, message: Mapping[str, Any]) -> bytes:
        return self.avro.encode(to_record(message))

    def decode(self, data: bytes | None) -> dict[str, Any]:
        record, lean = self.avro.read(data)
        return from_lean_record(record) if lean else from_record(record)


def outbound_codec(registry: SchemaRegistryClient | None = None, fields: Iterable[str] | None = None) -> AvroCodec:
    """`fields`: decode only these of each record (see AvroCodec)."""
    return AvroCodec(load_schema("outbound"), history("outbound"), registry=registry, fields=fields)


def deadletter_codec(registry: SchemaRegistryClient | None = None) -> AvroCodec:
    return AvroCodec(load_schema("deadletter"), history("deadletter"), registry=registry)


__all__ = [
    "CALL_TYPES",
    "DECODE_REASONS",
    "AvroCodec",
    "ConfigurationError",
    "DecodeError",
    "EncodeError",
    "EventCodec",
    "EventRouterError",
    "FinalError",
    "RetryableError",
    "SchemaRegistryClient",
    "Topics",
    "deadletter_codec",
    "from_record",
    "full_problems",
    "history",
    "load_schema",
    "outbound_codec",
    "reader_problems",
    "schema_fingerprint",
    "to_record",
]
