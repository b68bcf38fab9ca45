"""A confluent-kafka producer with the lifecycle every publisher here needs.

One background thread serves delivery reports. Safe across threads (confluent-kafka's producer is) and
across `fork()`: a child gets a fresh producer on first use, never the parent's (librdkafka's threads do
not survive a fork), and flushes it when it exits, whether by `sys.exit` (atexit) or as a
multiprocessing worker (a multiprocessing finalizer). The parent keeps delivering what it queued.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import multiprocessing
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing import util as mp_util
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from schemas import RetryableError
from schemas.runtime.kafka import producer_settings
from schemas.runtime.kafka_watch import WATCH, report_error

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]
OnFull = Literal["block", "drop"]


class DeliveryError(RetryableError):
    """Kafka did not acknowledge an event (broker unreachable past the message timeout, topic missing, ...)."""


class QueueFullError(RetryableError):
    """The producer's buffer stayed full past the blocking bound (or the policy is to drop)."""


@dataclass
class Counters:
    """What happened to every event handed to the publisher. queued = acked + failed + in flight."""

    queued: int = 0
    acked: int = 0
    failed: int = 0
    dropped: int = 0


_live: weakref.WeakSet[Publisher] = weakref.WeakSet()
# Every librdkafka handle of this process, including those only a finishing poller thread still holds.
_handles: set[Producer] = set()
_pinned: list[Producer] = []
_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_decref = ctypes.pythonapi.Py_DecRef
_decref.argtypes = [ctypes.py_object]


def _before_fork() -> None:
    """A forked child must never destroy an inherited librdkafka handle: destroying one there crashes
    (its threads did not survive the fork), and Python drops references of the parent's other threads
    in the child before any handler of ours runs. So each handle gets one extra reference across the
    fork: given back in the parent, kept forever in the child."""
    _pinned[:] = {*_handles, *(p._producer for p in list(_live) if p._producer is not None)}
    for handle in _pinned:
        _incref(handle)


def _after_fork_in_parent() -> None:
    for handle in _pinned:
        _decref(handle)
    _pinned.clear()


def _after_fork_in_child() -> None:
    _pinned.clear()  # the extra references stay: these handles are never destroyed here
    _handles.clear()
    for publisher in list(_live):
        publisher._forget_parent()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


class Publisher:
    """Publishes bytes to one topic. `start()` connects (also lazily on first publish)."""

    def __init__(self, bootstrap: str, topic: str, *, on_delivery: DeliveryCallback | None = None,
                 config: Mapping[str, Any] | None = None, on_full: OnFull = "block",
                 block_timeout: float = 5.0, name: str = "eventrouter", errors_only: bool = False) -> None:
        if on_full not in ("block", "drop"):
            raise ValueError("on_full must be 'block' or 'drop'")
        self.topic = topic
        self.settings = producer_settings(bootstrap, config)
        self.settings.setdefault("client.id", name)
        # errors_only: librdkafka reports failed deliveries only. A report per acknowledged event costs
        # the caller ~1.5 us each and arrives in bursts of a whole batch (the SDK's p99 came from them);
        # acknowledged = queued - failed - dropped - in flight.
        self.errors_only = errors_only
        if errors_only:
            self.settings["delivery.report.only.error"] = True
        self._since_poll = 0
        self._poll_every = 32 if errors_only else 1  # the poller thread serves the rest within 50 ms
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.counters = Counters()
        self._on_delivery = on_delivery
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._pid = 0
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._down_since: float | None = None
        _live.add(self)

    def __repr__(self) -> str:
        return f"Publisher(topic={self.topic!r}, {self.counters})"

    def start(self) -> Producer:
        with self._lock:
            if self._producer is not None and self._pid == os.getpid():
                return self._producer
            settings = dict(self.settings, on_delivery=self._delivered, error_cb=self._error)
            self._producer = Producer(settings)
            _handles.add(self._producer)
            self._pid = os.getpid()
            self._stopping.clear()
            self._poller = threading.Thread(target=self._poll_loop, args=(self._producer,),
                                            name=f"eventrouter-poll-{self.topic}", daemon=True)
            self._poller.start()
            ref = weakref.ref(self)
            atexit.register(_close_at_exit, ref)
            if multiprocessing.parent_process() is not None:
                mp_util.Finalize(self, _close_at_exit, args=(ref,), exitpriority=100)
            return self._producer

    def publish(self, value: bytes, key: bytes | str | None = None, callback: DeliveryCallback | None = None,
                headers: list[tuple[str, str | bytes | None]] | None = None) -> bool:
        """Queue one record; False if it was dropped by the 'drop' policy (and reported)."""
        producer = self._producer if self._producer is not None else self.start()  # None again after a fork
        try:
            if callback is None and headers is None:  # the SDK's fire-and-forget path: nothing else to pass
                producer.produce(self.topic, value, key)
            else:
                producer.produce(self.topic, value, key, headers=headers, on_delivery=callback)
        except (BufferError, KafkaException):
            self._publish_when_full(producer, value, key, callback, headers)
        with self._lock:
            self.counters.queued += 1
            self._since_poll += 1
            serve = self._since_poll >= self._poll_every
            if serve:
                self._since_poll = 0
        if serve:  # serve ready reports in this thread now and then: cheaper than a GIL hand-off each
            producer.poll(0)
        return True

    def _publish_when_full(self, producer: Producer, value: bytes, key: bytes | str | None,
                           callback: DeliveryCallback | None, headers: list[tuple[str, str | bytes | None]] | None
                           ) -> None:
        """Retry a refused produce() under the full-buffer policy; raise what cannot be queued."""
        deadline = 0.0
        while True:
            try:
                producer.produce(self.topic, value, key, headers=headers, on_delivery=callback)
                return
            except BufferError:
                if self.on_full == "drop":
                    with self._lock:
                        self.counters.dropped += 1
                    raise QueueFullError("producer buffer full; event dropped by the 'drop' policy") from None
                now = time.monotonic()
                deadline = deadline or now + self.block_timeout
                if now >= deadline:
                    raise QueueFullError(f"producer buffer still full after {self.block_timeout}s") from None
                producer.poll(0.005)
            except KafkaException as exc:  # e.g. the topic does not exist: nothing was queued
                err = exc.args[0] if exc.args else None
                text = err.str() if isinstance(err, KafkaError) else str(exc)
                raise DeliveryError(f"cannot publish to {self.topic}: {text}") from None

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.settle(err)
        if err is not None:  # after an outage, the whole buffer fails at once: a line a minute, with a count
            WATCH.once(f"delivery {self.topic}", logging.WARNING, "delivery failed topic=%s: %s", msg.topic(),
                       err.str())
        if self._on_delivery is not None:
            self._on_delivery(err, msg)

    def settle(self, err: KafkaError | None) -> None:
        """Count a delivery report (per-record callbacks call this themselves)."""
        if err is None:
            self._down_since = None
        with self._lock:
            if err is None:
                self.counters.acked += 1
            else:
                self.counters.failed += 1

    def _error(self, err: KafkaError) -> None:
        report_error(err)  # one line per change of a broker's state, for the whole process
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self._down_since = self._down_since or time.monotonic()

    @property
    def brokers_down(self) -> bool:
        """Every broker unreachable since the last acknowledgement."""
        return self._down_since is not None

    def _poll_loop(self, producer: Producer) -> None:
        # A blocking poll wakes as soon as a delivery report arrives: a waiting caller (gateway request,
        # sync_mode, an awaited call) learns of its acknowledgement within a millisecond.
        # The timeout is long: each return takes the GIL from the caller's thread, which measured as
        # 5 ms stalls (the interpreter's switch interval) at 20 returns a second.
        try:
            while not self._stopping.is_set():
                producer.poll(0.5)
        finally:
            _handles.discard(producer)

    def snapshot(self) -> Counters:
        """The counters now; with errors_only, `acked` is derived (everything queued, settled, not failed)."""
        with self._lock:
            counts = Counters(**vars(self.counters))
        if self.errors_only:
            counts.acked = counts.queued - counts.failed - self.in_flight()
        return counts

    def in_flight(self) -> int:
        producer = self._producer
        return len(producer) if producer is not None and self._pid == os.getpid() else 0

    def flush(self, timeout: float | None = None) -> int:
        """Wait until everything queued is acknowledged or reported; return how many are still pending."""
        producer = self._producer
        if producer is None or self._pid != os.getpid():
            return 0
        return int(producer.flush(-1 if timeout is None else timeout))

    def close(self, timeout: float | None = None) -> int:
        """Flush, then stop the delivery thread. Idempotent. Returns events still pending (0 normally)."""
        pending = self.flush(timeout)
        self._stopping.set()  # the poller (a daemon thread) ends at its next wake-up, within 0.5 s
        return pending

    def _forget_parent(self) -> None:
        """In a forked child: the parent's producer is not ours to use or flush."""
        self._producer = None
        self._poller = None
        self._pid = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.counters = Counters()


def _close_at_exit(ref: weakref.ref[Publisher]) -> None:
    publisher = ref()
    if publisher is not None and publisher._pid == os.getpid() and publisher._producer is not None:
        pending = publisher.close()
        if pending:
            log.error("exit with %s events not acknowledged by Kafka topic=%s", pending, publisher.topic)
