"""Numbered config revisions on a compacted Kafka topic: `config apply`, `history`, `rollback`, and what
running workers watch to take a new revision without a restart.

One partition, one record per revision: the value is JSON with the resolved config document (every
`starter:` and `file:` playbook inlined, so a revision keeps its meaning whatever files change later),
its SHA-256, when and by whom it was applied, and where from. The revision number is the record's
offset + 1: unique and increasing without any coordination between two people applying at once.
Each record has a key of its own, so compaction never removes history. Secrets are `${ENV}`
references only (the config model refuses a literal secret), so none is ever published.

A rollback publishes an old revision's document again as a new revision: numbers only grow, and every
routed record names the revision that shaped it.
"""

from __future__ import annotations

import getpass
import hashlib
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from schemas.config import Config, config_from_document, resolved_document
from schemas.errors import ConfigurationError, RetryableError
from schemas.runtime.kafka import consumer_settings, ensure_topics, producer_settings, watermarks
from schemas.topics import Topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revision:
    number: int
    document: Mapping[str, Any]
    sha256: str
    applied_at_ms: int
    applied_by: str
    source: str

    def config(self) -> Config:
        return config_from_document(self.document, f"revision {self.number}")

    def summary(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.applied_at_ms / 1000))
        pipelines = len(self.document.get("pipelines") or [])
        integrations = len(self.document.get("integrations") or [])
        return (f"{self.number:>5}  {when}Z  {self.sha256[:12]}  {self.applied_by}  {self.source}  "
                f"({pipelines} pipelines, {integrations} integrations)")


def document_sha(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_revision(offset: int, value: bytes | None) -> Revision | None:
    """A record of the config topic as a Revision, or None for what is not one (logged)."""
    try:
        data = orjson.loads(value or b"")
        document = data["document"]
        if not isinstance(document, dict):
            raise TypeError("document is not an object")
        return Revision(offset + 1, document, str(data["sha256"]), int(data["appliedAt"]),
                        str(data.get("appliedBy", "")), str(data.get("source", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.error("config topic offset %s is not a revision: %s", offset, type(exc).__name__)
        return None


class ConfigStore:
    """Publish and read revisions. Constructors store; every call names its timeout."""

    def __init__(self, bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None,
                 timeout: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.topic = topics.config
        self.client = dict(client or {})
        self.timeout = timeout

    def ensure_topic(self) -> None:
        ensure_topics(self.bootstrap, [self.topic], partitions=1,
                      config={"cleanup.policy": "compact", "retention.ms": "-1"}, client=self.client)

    # -- reading ---------------------------------------------------------------------------------------
    def history(self) -> list[Revision]:
        """Every revision, oldest first."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        self.ensure_topic()
        consumer = Consumer(consumer_settings(self.bootstrap, f"config-reader-{uuid.uuid4().hex[:8]}",
                                              {"enable.auto.commit": False, **self.client}))
        try:
            low, high = watermarks(consumer, self.topic, 0, self.timeout)
            consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
            revisions: list[Revision] = []
            position = low
            deadline = time.monotonic() + self.timeout
            while position < high:
                if time.monotonic() > deadline:
                    raise RetryableError(f"reading {self.topic} took over {self.timeout:.0f} s")
                for message in consumer.consume(num_messages=500, timeout=0.5):
                    if message.error() is not None:
                        continue
                    offset = message.offset() or 0
                    position = offset + 1
                    revision = parse_revision(offset, message.value())
                    if revision is not None:
                        revisions.append(revision)
            return revisions
        finally:
            consumer.close()

    def latest(self) -> Revision | None:
        revisions = self.history()
        return revisions[-1] if revisions else None

    # -- writing ---------------------------------------------------------------------------------------
    def apply(self, path: str | Path) -> tuple[Revision, bool]:
        """Validate the file and publish it as a new revision; (revision, False) when its content is the
        latest revision's already (nothing published)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None
        document = resolved_document(text, path.parent, str(path))
        config_from_document(document, str(path))  # every problem at once, before anything is published
        latest = self.latest()
        if latest is not None and latest.sha256 == document_sha(document):
            return latest, False
        return self._publish(document, str(path)), True

    def rollback(self, number: int) -> Revision:
        """Publish revision `number`'s document again, as a new revision."""
        for revision in self.history():
            if revision.number == number:
                revision.config()  # still valid under this version's rules
                return self._publish(revision.document, f"rollback to {number}")
        raise ConfigurationError(f"{self.topic}: no revision {number}")

    def publish(self, document: Mapping[str, Any], source: str, by: str) -> Revision:
        """Validate a resolved config document and publish it as a new revision applied by `by` (the
        console's user), whatever the latest holds."""
        config_from_document(document, source)
        return self._publish(document, source, by)

    def _publish(self, document: Mapping[str, Any], source: str, by: str | None = None) -> Revision:
        from confluent_kafka import KafkaError, Message, Producer

        self.ensure_topic()
        now = int(time.time() * 1000)
        by = by or f"{getpass.getuser()}@{socket.gethostname()}"
        sha = document_sha(document)
        value = orjson.dumps({"document": document, "sha256": sha, "appliedAt": now, "appliedBy": by,
                              "source": source})
        result: list[Message] = []
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(error)
            else:
                result.append(message)

        producer = Producer(producer_settings(self.bootstrap, {"linger.ms": 0, **self.client}))
        producer.produce(self.topic, value, key=f"revision-{uuid.uuid4().hex}".encode(), on_delivery=delivered)
        producer.flush(self.timeout)
        if errors or not result:
            raise RetryableError(f"{self.topic}: revision not acknowledged: {errors[0] if errors else 'timeout'}")
        offset = result[0].offset()
        assert offset is not None
        return Revision(offset + 1, document, sha, now, by, source)


class RevisionWatcher:
    """A thread that follows the config topic and calls `on_revision` with each newer valid revision.

    It reads everything there is first and hands over only the newest valid one (a worker starting
    against a long history compiles one config, not all of them). A revision that does not validate
    under this version is logged and skipped; the current one stays in force."""

    def __init__(self, store: ConfigStore, on_revision: Callable[[Revision, Config], None]) -> None:
        self.store = store
        self.on_revision = on_revision
        self.current = 0  # the revision in force
        self.seen = 0     # the newest revision read, valid or not
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.store.ensure_topic()
        self._thread = threading.Thread(target=self._run, name="config-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(consumer_settings(self.store.bootstrap, f"config-watcher-{uuid.uuid4().hex[:8]}",
                                              {"enable.auto.commit": False, **self.store.client}))
        consumer.assign([TopicPartition(self.store.topic, 0, OFFSET_BEGINNING)])
        try:
            while not self._stop.is_set():
                newest: Revision | None = None
                for message in consumer.consume(num_messages=100, timeout=0.5):
                    if message.error() is None:
                        revision = parse_revision(message.offset() or 0, message.value())
                        newest = revision if revision is not None else newest
                if newest is not None and newest.number > self.seen:
                    self._take(newest)
        except Exception:  # the watcher must never die silently; the worker keeps its config
            log.exception("config watcher stopped")
        finally:
            consumer.close()

    def _take(self, revision: Revision) -> None:
        try:
            config = revision.config()
        except ConfigurationError as exc:
            log.error("config revision %s is not valid here, keeping revision %s: %s", revision.number,
                      self.current, str(exc).splitlines()[0])
            self.seen = revision.number
            return
        self.seen = revision.number
        try:
            self.on_revision(revision, config)
        except Exception:  # a config that cannot be compiled must not stop the watcher
            log.exception("config revision %s could not be taken up; keeping revision %s", revision.number,
                          self.current)
            return
        self.current = revision.number
