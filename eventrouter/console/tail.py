"""The live views' feed from Kafka: one consumer for every view open in this console process. It reads
from the end, on a group of its own, committing nothing: the raw topic while a view of the events coming
in is open, an integration's topic while a view of it is, and the receipts while any is; it stops a while
after the last view closes. A record is decoded only while some view may still be sent one this second,
so a view costs the same at 1k or 10k events a second. What each view is sent is eventrouter/console/live.py's."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from eventrouter.console.live import View, incoming, outcomes, routed
from schemas import EventCodec, Topics, outbound_codec
from schemas.errors import DecodeError
from schemas.runtime.kafka import consumer_settings

log = logging.getLogger(__name__)
QUEUED: Final = 2_000      # messages waiting for a view's page at most (the oldest go first)
IDLE_S: Final = 30.0       # the consumer stops this long after the last view closed
STATS_S: Final = 2.0       # how often a view is told what it was not shown
RETRY_S: Final = 5.0       # a topic not there yet is looked for again after this
EARLY: Final = 5_000       # outcomes kept for events not read yet
MAX_VIEWS: Final = 50      # live views open at once in one console


class Feed:
    """One view's messages, (kind, data), from the feed's thread to the page's handler."""

    def __init__(self, view: View, loop: asyncio.AbstractEventLoop) -> None:
        self.view, self.loop = view, loop
        self.messages: deque[tuple[str, dict[str, Any]]] = deque(maxlen=QUEUED)
        self.ready = self.closed = False
        self.read = 0  # records read on the view's topic since it opened
        self._wake = asyncio.Event()

    def put(self, kind: str, data: dict[str, Any]) -> None:
        """From the feed's thread."""
        self.messages.append((kind, data))
        self.loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        self.closed = True
        self.loop.call_soon_threadsafe(self._wake.set)

    async def next(self, timeout: float) -> list[tuple[str, dict[str, Any]]]:
        """What came since the last call, waiting up to `timeout` for something ([] then)."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return []
        self._wake.clear()
        out = []
        while self.messages:
            out.append(self.messages.popleft())
        return out


class LiveHub:
    def __init__(self, bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None,
                 pipelines: Callable[[], Mapping[str, str]] = dict) -> None:
        """`pipelines`: writeKey -> pipeline in the config in force (asked again every few seconds)."""
        self.bootstrap, self.topics, self.client = bootstrap, topics, dict(client or {})
        self.pipelines = pipelines
        self._keys: Mapping[str, str] = {}
        self._feeds: set[Feed] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._events, self._outbound = EventCodec(), outbound_codec()
        # the newest outcomes by messageId: a receipt may be read before the event it is about (another
        # topic, fetched apart)
        self._early: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def open(self, feed: Feed) -> bool:
        """False: MAX_VIEWS are open already (each costs its page's stream and the feed's work)."""
        with self._lock:
            if len(self._feeds) >= MAX_VIEWS:
                return False
            self._feeds.add(feed)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name="console-live", daemon=True)
                self._thread.start()
        return True

    def close(self, feed: Feed) -> None:
        with self._lock:
            self._feeds.discard(feed)

    def stop(self) -> None:
        """Every view's page is told to end (the console is stopping); the consumer stops."""
        with self._lock:
            feeds, self._feeds = list(self._feeds), set()
        for feed in feeds:
            feed.close()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        from confluent_kafka import Consumer

        group = f"{self.topics.prefix}-console-live-{uuid.uuid4().hex[:8]}"  # its own; it never commits
        consumer = Consumer(consumer_settings(self.bootstrap, group, {
            "enable.auto.commit": False, "queued.max.messages.kbytes": 2048, "fetch.max.bytes": 4 << 20,
            **self.client}))
        reading = _Reading(consumer, self.topics)
        idle_since: float | None = None
        last_stats = last_keys = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    feeds = list(self._feeds)
                now = time.monotonic()
                if not feeds:
                    idle_since = idle_since or now
                    if now - idle_since > IDLE_S:
                        return
                    reading.follow(set())
                    time.sleep(0.2)
                    continue
                idle_since = None
                reading.follow({self._topic_of(f.view) for f in feeds} | {self.topics.receipts})
                if now - last_keys >= STATS_S:
                    last_keys, self._keys = now, self.pipelines()
                for feed in feeds:
                    if not feed.ready and self._topic_of(feed.view) in reading.assigned:
                        feed.ready = True
                        feed.put("ready", {})
                read = [m for m in consumer.consume(num_messages=500, timeout=0.3) if m.error() is None]
                read.sort(key=lambda m: m.topic() == self.topics.receipts)  # events before their outcomes
                for message in read:
                    self._dispatch(message, feeds)
                if now - last_stats >= STATS_S:
                    last_stats = now
                    for feed in feeds:
                        feed.put("stats", {"read": feed.read, "notShown": feed.view.not_shown})
        except Exception:  # logged; the views say the feed stopped, the console goes on
            log.exception("console: the live feed stopped")
            with self._lock:
                for feed in self._feeds:
                    feed.put("problem", {"message": "The live feed stopped (see the console's log)."})
        finally:
            consumer.close()

    def _topic_of(self, view: View) -> str:
        return self.topics.raw if view.integration is None else self.topics.integration(view.integration)

    def _dispatch(self, message: Any, feeds: list[Feed]) -> None:
        topic = message.topic()
        at_ms = message.timestamp()[1]
        if topic == self.topics.receipts:
            try:
                receipt = orjson.loads(message.value())
            except orjson.JSONDecodeError:
                return
            for message_id, outcome in outcomes(receipt):
                self._early.setdefault(message_id, []).append(outcome)
                for feed in feeds:
                    shown = feed.view.outcome(message_id, outcome)
                    if shown is not None:
                        feed.put("outcome", shown)
            while len(self._early) > EARLY:
                self._early.popitem(last=False)
            return
        mine = [f for f in feeds if self._topic_of(f.view) == topic]
        for feed in mine:
            feed.read += 1
        second = int(time.monotonic())
        if all(f.view.full(second) for f in mine):
            for feed in mine:
                feed.view.not_shown += 1
            return  # nobody may be sent one this second: not decoded
        try:
            if topic == self.topics.raw:
                row = incoming(self._events.decode(message.value()), at_ms, self._keys)
            else:
                record = self._outbound.decode(message.value())
                row = routed(record, orjson.loads(record["payload"]), at_ms)
        except (DecodeError, orjson.JSONDecodeError, KeyError):
            return  # the worker or the forwarder dead-letters it
        for feed in mine:
            shown = feed.view.offer(row, second)
            if shown is not None:
                feed.put("event", shown)
                for outcome in self._early.get(row.message_id, ()):  # its receipt was read first
                    early = feed.view.outcome(row.message_id, outcome)
                    if early is not None:
                        feed.put("outcome", early)


class _Reading:
    """Which topics the consumer reads, each from its end when it was added."""

    def __init__(self, consumer: Any, topics: Topics) -> None:
        self.consumer, self.topics = consumer, topics
        self.assigned: dict[str, list[int]] = {}
        self._missing: dict[str, float] = {}  # a topic not there yet -> when to look again

    def follow(self, wanted: set[str]) -> None:
        from confluent_kafka import TopicPartition

        for topic in set(self.assigned) - wanted:
            self.consumer.incremental_unassign([TopicPartition(topic, p) for p in self.assigned.pop(topic)])
        now = time.monotonic()
        for topic in wanted - set(self.assigned):
            if self._missing.get(topic, 0.0) > now:
                continue
            metadata = self.consumer.list_topics(topic, timeout=5.0).topics.get(topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                self._missing[topic] = now + RETRY_S
                continue
            ends = []
            for p in sorted(metadata.partitions):
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5.0)
                ends.append(TopicPartition(topic, p, high))
            self.consumer.incremental_assign(ends)
            self.assigned[topic] = sorted(metadata.partitions)
            self._missing.pop(topic, None)


__all__ = ["Feed", "LiveHub"]
