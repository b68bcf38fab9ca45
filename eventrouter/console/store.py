"""The console's only store is Kafka: the config topic (numbered revisions, as `config apply` writes them)
and the audit topic. Each console process follows both from the beginning on a consumer of its own that
never joins a group or commits, keeps what it read in memory (a page never scans a topic), and writes
with acks from all replicas. Several consoles can run at once: each sees the others' writes. The test
panel's live event is read from the end of the raw topic, on demand, by a consumer that never commits. The
processes' heartbeats of the last day are followed the same way, into the overview's numbers."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import orjson

from eventrouter.console.audit import AuditRecord, decode
from eventrouter.console.pulse import KEPT_MINUTES, MINUTE_MS, Pulse, window
from eventrouter.console.pulse import Window as PulseWindow
from schemas import EventCodec, Topics
from schemas.errors import ConfigurationError, EventRouterError, RetryableError
from schemas.runtime.heartbeat import RETENTION_MS
from schemas.runtime.kafka import consumer_settings, ensure_topics, producer_settings
from schemas.runtime.revisions import ConfigStore, Revision, parse_revision

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_AUDIT = 10_000  # the newest records kept in memory; the topic keeps all
LOOK_BACK = 500  # the records per raw partition a live-event fetch reads, from the end


@dataclass(frozen=True)
class LiveEvent:
    at_ms: int                     # when the gateway wrote it to the raw topic
    event: dict[str, Any]          # as the gateway accepted it, without its writeKey


class Store(Protocol):
    """What the console's handlers need of the store (a fake in the handler tests)."""

    def history(self) -> list[Revision]: ...

    def publish(self, document: Mapping[str, Any], source: str, by: str) -> Revision: ...

    def rollback(self, number: int, by: str) -> Revision: ...

    def audit(self) -> list[AuditRecord]: ...

    def append(self, entry: AuditRecord) -> None: ...

    def recent_events(self, write_keys: Collection[str], limit: int) -> list[LiveEvent]: ...


class Follower(Generic[T]):
    """A thread reading one single-partition topic from its start for as long as it runs."""

    def __init__(self, bootstrap: str, topic: str, parse: Callable[[int, bytes | None], T | None],
                 client: Mapping[str, Any], *, keep: int | None = None, since_ms: int | None = None) -> None:
        """`since_ms`: from the first record written then, not the topic's start."""
        self.bootstrap, self.topic, self.parse, self.client, self.keep = bootstrap, topic, parse, client, keep
        self.since_ms = since_ms
        self.items: list[T] = []
        self.read_to = 0  # the next offset to read
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"follow-{topic}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def wait_past(self, offset: int, timeout: float) -> bool:
        """Until the record at `offset` was read (a write of ours is seen before the page shows the list)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.read_to > offset, timeout)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

        consumer = Consumer(consumer_settings(self.bootstrap, f"console-{uuid.uuid4().hex[:8]}",
                                              {"enable.auto.commit": False, **self.client}))
        start = OFFSET_BEGINNING
        if self.since_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(self.topic, 0, self.since_ms)], timeout=10.0)[0]
            start = found.offset if found.offset >= 0 else OFFSET_END
        consumer.assign([TopicPartition(self.topic, 0, start)])
        try:
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=500, timeout=0.5)
                read = [m for m in messages if m.error() is None]
                if not read:
                    continue
                parsed = [self.parse(m.offset() or 0, m.value()) for m in read]
                with self._changed:
                    self.items.extend(p for p in parsed if p is not None)
                    if self.keep is not None and len(self.items) > self.keep:
                        del self.items[:-self.keep]
                    self.read_to = (read[-1].offset() or 0) + 1
                    self._changed.notify_all()
        except Exception:  # logged; the console shows what it read so far
            log.exception("following %s stopped", self.topic)
        finally:
            consumer.close()


class KafkaStore:
    """The Store on a broker. Constructors store; `start()` makes the topics and starts following."""

    def __init__(self, bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None,
                 timeout: float = 30.0) -> None:
        self.client = dict(client or {})
        self.bootstrap, self.topics, self.timeout = bootstrap, topics, timeout
        self.config = ConfigStore(bootstrap, topics, self.client, timeout)
        self.revisions: Follower[Revision] = Follower(bootstrap, topics.config, parse_revision, self.client)
        self.records: Follower[AuditRecord] = Follower(bootstrap, topics.audit, lambda _o, v: decode(v),
                                                       self.client, keep=MAX_AUDIT)
        self._producer: Any = None

    def start(self) -> KafkaStore:
        from confluent_kafka import Producer

        self.config.ensure_topic()
        ensure_audit_topic(self.bootstrap, self.topics, self.client)
        self._producer = Producer(producer_settings(self.bootstrap, {"linger.ms": 0, **self.client}))
        self.revisions.start()
        self.records.start()
        return self

    def stop(self) -> None:
        self.revisions.stop()
        self.records.stop()
        if self._producer is not None:
            self._producer.flush(self.timeout)

    def history(self) -> list[Revision]:
        return list(self.revisions.items)

    def publish(self, document: Mapping[str, Any], source: str, by: str) -> Revision:
        revision = self.config.publish(document, source, by)
        self.revisions.wait_past(revision.number - 1, self.timeout)
        return revision

    def rollback(self, number: int, by: str) -> Revision:
        for revision in self.history():
            if revision.number == number:
                return self.publish(revision.document, f"rollback to {number}", by)
        raise KeyError(number)

    def audit(self) -> list[AuditRecord]:
        return list(self.records.items)

    def append(self, entry: AuditRecord) -> None:
        offset = acknowledged(self._producer, self.topics.audit, entry.encode(), self.timeout)
        self.records.wait_past(offset, self.timeout)

    def recent_events(self, write_keys: Collection[str], limit: int) -> list[LiveEvent]:
        """The newest `limit` events sent with one of `write_keys`, among the last LOOK_BACK records of each
        raw partition; RetryableError when the broker does not answer."""
        from confluent_kafka import KafkaException

        from eventrouter.ops.ranges import Span, find_span, read_span

        keys, codec, found = set(write_keys), EventCodec(), []
        try:
            span = find_span(self.bootstrap, self.topics.raw, client=self.client, timeout=10.0)
            span = Span(span.topic, {p: max(low, span.end[p] - LOOK_BACK) for p, low in span.start.items()},
                        span.end)
            for record in read_span(self.bootstrap, span, client=self.client, idle_timeout=10.0):
                try:
                    event = codec.decode(record.value)
                except EventRouterError:
                    continue  # the worker dead-letters it; it is no sample
                if event.pop("writeKey", None) in keys:
                    found.append(LiveEvent(record.timestamp_ms, event))
        except ConfigurationError:
            return []  # no raw topic yet: nothing was sent
        except KafkaException as exc:
            raise RetryableError(f"{self.topics.raw}: {exc.args[0] if exc.args else exc}") from None
        return sorted(found, key=lambda e: e.at_ms, reverse=True)[:limit]


def ensure_audit_topic(bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None,
                       timeout: float = 30.0) -> None:
    """Append-only: deleted after ten years, never compacted (its records have no key)."""
    ensure_topics(bootstrap, [topics.audit], partitions=1, client=client, timeout=timeout,
                  config={"cleanup.policy": "delete", "retention.ms": str(10 * 365 * 86_400_000)})


def acknowledged(producer: Any, topic: str, value: bytes, timeout: float) -> int:
    """Produce one record and wait for the broker's acknowledgement: its offset; RetryableError if none."""
    done: list[Any] = []
    producer.produce(topic, value, on_delivery=lambda err, msg: done.append((err, msg)))
    deadline = time.monotonic() + timeout
    while not done and time.monotonic() < deadline:
        producer.poll(0.1)
    if not done or done[0][0] is not None:
        raise RetryableError(f"{topic}: audit record not acknowledged: {done[0][0] if done else 'timeout'}")
    return int(done[0][1].offset())


def append_audit(bootstrap: str, topics: Topics, entry: AuditRecord, client: Mapping[str, Any] | None = None,
                 timeout: float = 10.0) -> None:
    """One audit record from outside a console (`eventrouter console-user`); RetryableError if not written."""
    from confluent_kafka import KafkaException, Producer

    try:
        ensure_audit_topic(bootstrap, topics, client, timeout)
        producer = Producer(producer_settings(bootstrap, {"linger.ms": 0, **(client or {})}))
        acknowledged(producer, topics.audit, entry.encode(), timeout)
    except TimeoutError:
        raise RetryableError(f"{topics.audit}: the broker at {bootstrap} did not answer") from None
    except KafkaException as exc:
        raise RetryableError(f"{topics.audit}: {exc.args[0] if exc.args else exc}") from None


class Heartbeats:
    """The processes' heartbeats of the last day, followed into a Pulse (eventrouter/console/pulse.py)."""

    def __init__(self, bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None) -> None:
        self.bootstrap, self.topics, self.client = bootstrap, topics, dict(client or {})
        self.pulse = Pulse()
        self.lock = threading.Lock()
        since = int(time.time() * 1000) - (KEPT_MINUTES + 1) * MINUTE_MS
        self._follower: Follower[None] = Follower(bootstrap, topics.heartbeats, self._take, self.client,
                                                  since_ms=since)

    def start(self) -> Heartbeats:
        ensure_topics(self.bootstrap, [self.topics.heartbeats], partitions=1, client=self.client,
                      config={"retention.ms": str(RETENTION_MS)})
        self._follower.start()
        return self

    def stop(self) -> None:
        self._follower.stop()

    def window(self, name: str, pipelines: list[str], integrations: list[str]) -> PulseWindow:
        with self.lock:
            return window(self.pulse, name, pipelines, integrations)

    def _take(self, _offset: int, value: bytes | None) -> None:
        try:
            record = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            return None
        if isinstance(record, dict):
            with self.lock:
                self.pulse.take(record)
        return None
