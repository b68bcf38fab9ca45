"""The stream worker's decisions, as plain functions on plain data: no Kafka, no Faust.

For one raw record (`Source`): decode the Avro bytes, find the pipeline by writeKey, validate the
call, correct its clock skew, then ask each of the pipeline's integrations what it receives. The
worker (streams/worker.py) only moves bytes and keeps the dedup table; everything it writes comes
from here:

- `Router.admit(source)` -> `Admitted` (the event, its pipeline and its dedup key) or `Rejected` (a
  dead letter with its reason: `decode.*`, `auth.*`, `invalid.*`, `limit.*`; `error.admit`, with the
  exception's type, for a failure no check foresaw).
- `Router.route(admitted)` -> `Routed`: one `Output` per integration that receives the event (its
  Outbound record, keyed by user), the integrations that filtered it and by which rule, and a dead
  letter per integration whose playbook failed on it (`playbook.*`, `playbook.budget` past a bound of
  schemas/playbook/budget.py; `playbook.error` with the exception's
  type for any other exception). One integration's failure never affects another.

Neither raises because of a record: whatever one record does, it ends as outputs or dead letters.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson

from schemas import EventCodec, Topics, deadletter_codec, outbound_codec
from schemas.config import Config, Pipeline
from schemas.deadletters import dead_letter, describe_error
from schemas.direct_outbound import OutboundParts, integration_part
from schemas.errors import DecodeError
from schemas.playbook.route import PlaybookError, Route
from schemas.runtime.kafka import RECORD_BYTES
from schemas.validation import DEFAULT_LIMITS, Limits, ValidationError, check_decoded, in_range
from streams.normalize import corrected_ms, iso_ms

log = logging.getLogger(__name__)
OUTPUT_BYTES: Final = RECORD_BYTES - 64 * 1024  # an Outbound record's bytes at most (and Kafka's overhead)

class Source(NamedTuple):
    """A raw record as the consumer saw it. (NamedTuples here: made once or more per event, and a
    frozen dataclass costs a microsecond to build.)"""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int  # the Kafka record's timestamp: when our producer or gateway published it
    headers: Sequence[tuple[str, bytes | None]] = ()


class Output(NamedTuple):
    """One record to write: an Outbound to an integration's topic, or a DeadLetter to the invalid topic."""

    topic: str
    key: bytes | None
    value: bytes | None
    integration: str | None = None
    partition: int | None = None  # None: by key (murmur2)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be routed at all: dead-letter it."""

    reason: str
    message: str
    dead_letter: Output
    pipeline: str | None = None


class Admitted(NamedTuple):
    """A decoded, valid event of a known pipeline, not yet routed."""

    source: Source
    event: dict[str, Any]
    pipeline: Pipeline
    dedup_key: str
    key: bytes | None
    timestamp_ms: int
    received_ms: int


@dataclass(slots=True)
class Routed:
    outputs: list[Output] = field(default_factory=list)
    filtered: list[tuple[str, str]] = field(default_factory=list)        # (integration, rule)
    failed: list[tuple[str, str, Output]] = field(default_factory=list)  # (integration, reason, dead letter)


_new = tuple.__new__


class Router:
    """One config revision, compiled: playbooks ready, codecs built. Immutable once made; a new
    revision makes a new Router, which the worker swaps in between batches."""

    def __init__(self, config: Config, revision: int, topics: Topics, limits: Limits = DEFAULT_LIMITS,
                 codec: EventCodec | None = None) -> None:
        self.config = config
        self.revision = revision
        self.topics = topics
        self.limits = limits
        self._codec = codec or EventCodec()
        self._outbound = outbound_codec()
        self._deadletters = deadletter_codec()
        # Only integrations that are enabled and named by a pipeline are compiled and routed to.
        named = {name for p in config.pipelines for name in p.integrations}
        self.routes: dict[str, Route] = {
            i.name: Route(i) for i in config.integrations if i.enabled and i.name in named}
        self._topic_of = {name: topics.integration(name) for name in self.routes}
        self._integration_parts = {name: integration_part(name, r.integration.kind) for name, r in self.routes.items()}
        # per pipeline, what routing each event needs of each of its integrations (disabled ones left out)
        self._targets: dict[str, list[tuple[str, Route, str, bytes]]] = {
            p.name: [(name, self.routes[name], self._topic_of[name], self._integration_parts[name])
                     for name in p.integrations if name in self.routes] for p in config.pipelines}
        self._max_future_s = config.settings.max_future_s
        self._pipelines = {key: p for p in config.pipelines for key in p.write_keys}  # a plain dict: hot path

    def integration_topics(self) -> list[str]:
        return sorted(self._topic_of.values())

    # -- admission: decode, authenticate, validate --------------------------------------------------
    def admit(self, source: Source) -> Admitted | Rejected:
        """Never raises for the record's sake: what no check foresaw is dead-lettered as `error.admit`
        with the exception's type, and the stream goes on."""
        try:
            return self._admit(source)
        except Exception as exc:  # noqa: BLE001 - one record must never stop the worker (a bug; logged by type)
            log.error("admission of %s/%s@%s failed: %s", source.topic, source.partition, source.offset,
                      type(exc).__name__)
            return self._reject(source, "error.admit", describe_error(exc), stage="validate")

    def _admit(self, source: Source) -> Admitted | Rejected:
        try:
            event = self._codec.decode(source.value)
        except DecodeError as exc:
            return self._reject(source, exc.reason, exc.message, stage="decode")
        except (ValueError, TypeError) as exc:  # a JSON part of the record that is not JSON
            return self._reject(source, "decode.corrupt", f"{type(exc).__name__}: {str(exc)[:200]}", stage="decode")
        message_id = event.get("messageId")
        write_key = event.get("writeKey")
        pipeline = self._pipelines.get(write_key) if isinstance(write_key, str) else None
        if pipeline is None:
            # the key itself is never logged or put in a message: it may be a mistyped secret
            what = "no writeKey" if not write_key else "unknown writeKey"
            return self._reject(source, "auth.unknown_write_key", what, stage="validate", message_id=message_id)
        if not pipeline.enabled:
            return self._reject(source, "auth.pipeline_disabled", f"pipeline {pipeline.name} is disabled",
                                stage="validate", message_id=message_id, pipeline=pipeline.name)
        try:
            stamps = check_decoded(event, self.limits)
        except ValidationError as exc:
            return self._reject(source, exc.reason, exc.message, stage="validate", message_id=message_id,
                                pipeline=pipeline.name)
        if not message_id:
            return self._reject(source, "invalid.missing_field", "messageId: every event needs one",
                                stage="validate", pipeline=pipeline.name)
        # The SDK does not set receivedAt: the time our producer published the record is the closest.
        received_ms = stamps.get("receivedAt", source.timestamp_ms)
        if not in_range(received_ms):  # a foreign producer's record time; no datetime can hold it
            return self._reject(source, "invalid.timestamp", "receivedAt: the record's time is outside the years "
                                "1-9999", stage="validate", message_id=message_id, pipeline=pipeline.name)
        timestamp_ms = corrected_ms(stamps, received_ms, self._max_future_s)
        event.pop("writeKey", None)  # a credential of ours: no playbook and no vendor sees it
        event["receivedAt"] = event.get("receivedAt") or iso_ms(received_ms)
        event["timestamp"] = iso_ms(timestamp_ms)
        user = event.get("userId") or event.get("anonymousId")
        # NamedTuples of the hot path are made with tuple.__new__: their own __new__ is interpreted code
        return _new(Admitted, (source, event, pipeline, f"{pipeline.name}\x1f{message_id}",
                               user.encode() if isinstance(user, str) else None, timestamp_ms, received_ms))

    # -- routing: each integration's decision and shape ---------------------------------------------
    def route(self, admitted: Admitted, replayed: bool = False, only: str | None = None) -> Routed:
        """Each integration's outcome; `only`: that one integration alone (a re-route, a re-injection)."""
        routed = Routed([], [], [])
        outputs = routed.outputs
        event = admitted.event
        parts: OutboundParts | None = None
        targets = self._targets[admitted.pipeline.name]
        if only is not None:
            targets = [t for t in targets if t[0] == only]
        for name, route, topic, integration in targets:
            try:
                payload, event_name, filtered_by = route.decide(event)
                if filtered_by is not None:
                    routed.filtered.append((name, filtered_by))
                    continue
                if parts is None:
                    parts = self._parts(admitted, replayed)
                value = parts.record(integration, event_name, orjson.dumps(payload))
                if len(value) > OUTPUT_BYTES:  # a playbook that copies the event many times: Kafka would refuse it
                    raise PlaybookError("playbook.output_too_large", f"the Outbound record is {len(value)} bytes, "
                                        f"over {OUTPUT_BYTES}")
            except PlaybookError as exc:
                routed.failed.append((name, exc.reason, self._dead_letter(
                    admitted.source, exc.reason, exc.message, stage="playbook", message_id=event.get("messageId"),
                    pipeline=admitted.pipeline.name, integration=name)))
                continue
            except (TypeError, ValueError, orjson.JSONEncodeError) as unwritable:  # a payload JSON cannot carry
                # (each clause names its exception apart: compiled, one name would be typed by the first clause)
                reason = "playbook.output"
                routed.failed.append((name, reason, self._dead_letter(
                    admitted.source, reason, f"{type(unwritable).__name__}: {str(unwritable)[:200]}", stage="playbook",
                    message_id=event.get("messageId"), pipeline=admitted.pipeline.name, integration=name)))
                continue
            except Exception as bug:  # noqa: BLE001 - a bug in a transform or expression: this event, this integration
                log.error("playbook of %s failed on %s/%s@%s: %s", name, admitted.source.topic,
                          admitted.source.partition, admitted.source.offset, type(bug).__name__)
                reason = "playbook.error"
                routed.failed.append((name, reason, self._dead_letter(
                    admitted.source, reason, describe_error(bug), stage="playbook",
                    message_id=event.get("messageId"), pipeline=admitted.pipeline.name, integration=name)))
                continue
            outputs.append(_new(Output, (topic, admitted.key, value, name, None)))
        return routed

    def error_letter(self, admitted: Admitted, exc: BaseException) -> Output:
        """The dead letter (`error.route`) of an admitted record whose dedup or routing raised."""
        return self._dead_letter(admitted.source, "error.route", describe_error(exc), stage="route",
                                 message_id=admitted.event.get("messageId"), pipeline=admitted.pipeline.name)

    def _parts(self, admitted: Admitted, replayed: bool) -> OutboundParts:
        event, source = admitted.event, admitted.source
        return OutboundParts(
            self._outbound.framing(), message_id=event["messageId"], pipeline=admitted.pipeline.name,
            call=event["type"], user_id=event.get("userId"), anonymous_id=event.get("anonymousId"),
            timestamp_ms=admitted.timestamp_ms, received_ms=admitted.received_ms, revision=self.revision,
            replayed=replayed, source_topic=source.topic, source_partition=source.partition,
            source_offset=source.offset)

    # -- dead letters ----------------------------------------------------------------------------------
    def _reject(self, source: Source, reason: str, message: str, *, stage: str, message_id: Any = None,
                pipeline: str | None = None) -> Rejected:
        return Rejected(reason, message, self._dead_letter(source, reason, message, stage=stage,
                                                           message_id=message_id, pipeline=pipeline), pipeline)

    def _dead_letter(self, source: Source, reason: str, message: str, *, stage: str, message_id: Any,
                     pipeline: str | None, integration: str | None = None) -> Output:
        record = dead_letter(
            reason=reason, message=message, stage=stage, original=source.value or b"",
            source_topic=source.topic, source_partition=source.partition, source_offset=source.offset,
            message_id=message_id if isinstance(message_id, str) else None, integration=integration,
            pipeline=pipeline, headers=source.headers)
        try:
            value = self._deadletters.encode(record)
        except Exception as exc:  # noqa: BLE001 - headers Avro cannot carry (a foreign producer's): kept out
            record["originalHeaders"] = []
            record["message"] = f"{message[:1500]} (original headers left out: {type(exc).__name__})"
            value = self._deadletters.encode(record)
        return Output(self.topics.invalid, None, value, integration)

