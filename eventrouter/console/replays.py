"""The console's replays: an integration's events of a time window (or offsets) sent to its vendor again,
after a vendor lost data or a fix. The console holds no vendor secret, so it does not deliver them itself:
it writes the window's Outbound records again to the integration's topic (the same messageIds, `replayed`
set) at the rate asked, and the integration's running forwarder delivers them; a vendor that deduplicates
by messageId keeps one copy. The dry run says how many events, the time they were written in, how many
the vendor's window will refuse, and whether the vendor deduplicates (eventrouter/ops/replay.py's plan).
Progress, written and then delivered or dead-lettered as the forwarder's receipts say, is followed live;
a replay can be cancelled (what was written by then is still delivered). `window_of` is pure."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import orjson

from eventrouter.ops.ranges import Span, find_span, parse_when, read_span
from eventrouter.ops.replay import plan
from schemas import Topics, outbound_codec
from schemas.config import Config, Integration
from schemas.errors import ConfigurationError, DecodeError
from schemas.runtime.kafka import consumer_settings, flush_until_acknowledged, producer_settings

log = logging.getLogger(__name__)
MAX_RATE: Final = 10_000.0
DEFAULT_RATE: Final = 500.0
FOLLOWED: Final = 200_000      # a replay larger than this is written, its delivery not followed here
FOLLOW_S: Final = 600.0        # how long after writing its delivery is followed at most
KEPT: Final = 20               # replays this console remembers


@dataclass(frozen=True)
class Window:
    integration: str
    since_ms: int | None = None
    until_ms: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    rate: float = DEFAULT_RATE   # events a second

    def describe(self) -> str:
        def iso(ms: int | None) -> str:
            return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000)) if ms is not None else "..."

        where = (f"offsets {self.from_offset if self.from_offset is not None else '...'} to "
                 f"{self.to_offset if self.to_offset is not None else '...'}" if self.since_ms is None and
                 self.until_ms is None else f"{iso(self.since_ms)} to {iso(self.until_ms)}")
        return f"{self.integration}: {where} at {self.rate:g}/s"


def window_of(form: Mapping[str, Any], names: set[str], now_ms: int | None = None) -> Window:
    """The window a form asks for; ConfigurationError says what is wrong with it."""
    name = str(form.get("integration", ""))
    if name not in names:
        raise ConfigurationError(f"integration: no integration named {name[:64]!r}")

    def when(key: str) -> int | None:
        text = str(form.get(key, "")).strip()[:64]
        try:
            return parse_when(text, now_ms) if text else None
        except ConfigurationError as exc:
            raise ConfigurationError(f"{key}: {exc}") from None

    def offset(key: str) -> int | None:
        text = str(form.get(key, "")).strip()[:20]
        if not text:
            return None
        if not text.isdigit():
            raise ConfigurationError(f"{key}: an offset is a whole number, not {text!r}")
        return int(text)

    since, until, start, end = when("since"), when("until"), offset("from_offset"), offset("to_offset")
    if since is None and until is None and start is None and end is None:
        raise ConfigurationError("window: give a time window (since, until) or offsets (from, to)")
    if (since is not None or until is not None) and (start is not None or end is not None):
        raise ConfigurationError("window: give a time window or offsets, not both")
    if since is not None and until is not None and until <= since:
        raise ConfigurationError("until: the window ends before it starts")
    rate_text = str(form.get("rate", "")).strip()[:12] or str(DEFAULT_RATE)
    try:
        rate = float(rate_text)
    except ValueError:
        raise ConfigurationError(f"rate: events a second, not {rate_text!r}") from None
    if not 1 <= rate <= MAX_RATE:
        raise ConfigurationError(f"rate: between 1 and {MAX_RATE:g} events a second")
    return Window(name, since, until, start, end, rate)


@dataclass
class Job:
    """One replay under way or done."""

    id: str
    window: Window
    by: str
    started_ms: int
    total: int = 0
    written: int = 0
    delivered: int = 0
    dead: int = 0
    state: str = "running"      # running | delivering | finished | cancelled | failed
    note: str = ""
    label: str = ""             # what it is, when not a replay (a re-injection followed)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> str:
        return self.label or f"replay of {self.window.describe()}"

    @property
    def followed(self) -> bool:
        return self.total <= FOLLOWED


class Replays(Protocol):
    """What the console's handlers need of replays (a fake in the handler tests)."""

    def plan(self, config: Config, window: Window) -> list[str]: ...

    def start(self, config: Config, window: Window, by: str) -> Job: ...

    def jobs(self) -> list[Job]: ...

    def job(self, job_id: str) -> Job | None: ...

    def cancel(self, job_id: str) -> Job | None: ...

    def receipts_end(self) -> dict[int, int]: ...

    def follow(self, sent: list[tuple[str, str]], by: str, label: str, since: dict[int, int]) -> Job: ...


def _integration(config: Config, name: str) -> Integration:
    for integration in config.integrations:
        if integration.name == name:
            return integration
    raise ConfigurationError(f"integration: no integration named {name!r}")


class KafkaReplays:
    def __init__(self, bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None) -> None:
        self.bootstrap, self.topics, self.client = bootstrap, topics, dict(client or {})
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def _span(self, window: Window) -> Span:
        return find_span(self.bootstrap, self.topics.integration(window.integration), since_ms=window.since_ms,
                         until_ms=window.until_ms, from_offset=window.from_offset, to_offset=window.to_offset,
                         client=self.client, timeout=10.0)

    def plan(self, config: Config, window: Window) -> list[str]:
        """The dry run's lines; nothing is written."""
        integration = _integration(config, window.integration)
        shown = plan(self.bootstrap, self._span(window), integration, client=self.client)
        took = shown.events / window.rate
        return [*shown.lines(), f"at {window.rate:g} events a second: about {took:.0f} s to write"]

    def start(self, config: Config, window: Window, by: str) -> Job:
        _integration(config, window.integration)
        span = self._span(window)
        job = Job(uuid.uuid4().hex[:10], window, by, int(time.time() * 1000), total=span.count)
        self._keep(job)
        threading.Thread(target=self._run, args=(job, span), name=f"replay-{job.id}", daemon=True).start()
        log.info("console: replay %s of %s started by %s (%s records)", job.id, window.integration, by, span.count)
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs.values()))

    def job(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """The job, told to stop writing (None: no such job)."""
        job = self.job(job_id)
        if job is not None:
            job.cancelled.set()
        return job

    def receipts_end(self) -> dict[int, int]:
        """Where the receipts topic ends now, per partition (what happens from here is followed)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(consumer_settings(self.bootstrap, f"{self.topics.prefix}-console-ends", {
            "enable.auto.commit": False, **self.client}))
        try:
            parts = consumer.list_topics(self.topics.receipts, timeout=10.0).topics.get(self.topics.receipts)
            if parts is None or parts.error is not None:
                return {}
            return {p: consumer.get_watermark_offsets(TopicPartition(self.topics.receipts, p), timeout=10.0)[1]
                    for p in parts.partitions}
        finally:
            consumer.close()

    def follow(self, sent: list[tuple[str, str]], by: str, label: str, since: dict[int, int]) -> Job:
        """A job that follows the delivery of events written again elsewhere (a re-injection): what the
        receipts written since `since` say became of each (integration, messageId) of `sent`."""
        job = Job(uuid.uuid4().hex[:10], Window(sent[0][0] if sent else "-"), by, int(time.time() * 1000),
                  total=len(sent), written=len(sent), state="delivering", label=label)
        self._keep(job)
        threading.Thread(target=self._follow, args=(job, set(sent), since), name=f"follow-{job.id}",
                         daemon=True).start()
        return job

    def _keep(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEPT:
                self._jobs.popitem(last=False)

    def _receipts(self, job: Job, since: dict[int, int] | None = None) -> Any:
        """A consumer of the receipts from `since` (None: their end now) that never commits."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer(consumer_settings(self.bootstrap, f"{self.topics.prefix}-console-replay-{job.id}", {
            "enable.auto.commit": False, "queued.max.messages.kbytes": 2048, **self.client}))
        start = self.receipts_end() if since is None else since
        consumer.assign([TopicPartition(self.topics.receipts, p, o) for p, o in start.items()])
        return consumer

    def _follow(self, job: Job, waiting: set[tuple[str, str]], since: dict[int, int]) -> None:
        settled: set[tuple[str, str]] = set()
        receipts = self._receipts(job, since)
        try:
            deadline = time.monotonic() + FOLLOW_S
            while len(settled) < len(waiting) and time.monotonic() < deadline and not job.cancelled.is_set():
                self._account(job, receipts, waiting, settled, timeout=0.5)
            job.state = "finished"
            if len(settled) < len(waiting):
                job.note = (f"{len(waiting) - len(settled)} events were not reported delivered or dead-lettered "
                            f"within {FOLLOW_S / 60:.0f} minutes: see the overview")
        except Exception as exc:  # logged with the job; the page says it failed
            job.state, job.note = "failed", f"{type(exc).__name__}: {str(exc)[:200]}"
            log.exception("console: following %s failed", job.id)
        finally:
            receipts.close()

    def _run(self, job: Job, span: Span) -> None:
        from confluent_kafka import Producer

        codec = outbound_codec()
        producer = Producer(producer_settings(self.bootstrap, self.client))
        receipts = self._receipts(job)  # from their end: what this replay causes
        name = job.window.integration
        waiting: set[tuple[str, str]] = set()
        settled: set[tuple[str, str]] = set()
        try:
            pace, next_at = 1.0 / job.window.rate, time.monotonic()
            accounted = next_at
            for record in read_span(self.bootstrap, span, client=self.client, idle_timeout=10.0):
                if job.cancelled.is_set():
                    break
                try:
                    outbound = codec.decode(record.value)
                except DecodeError:
                    continue  # the forwarder dead-lettered it when it met it
                outbound["replayed"] = True
                producer.produce(span.topic, codec.encode(outbound), record.key)
                job.written += 1
                if job.followed:
                    waiting.add((name, str(outbound["messageId"])))
                next_at += pace
                if next_at > time.monotonic():
                    producer.poll(0)
                    time.sleep(next_at - time.monotonic())
                if job.written % 200 == 0 or time.monotonic() - accounted > 1.0:  # progress while writing
                    self._account(job, receipts, waiting, settled)
                    accounted = time.monotonic()
            flush_until_acknowledged(producer, f"replay {job.id}")
            job.state = "delivering" if job.followed and waiting else job.state
            deadline = time.monotonic() + FOLLOW_S
            while job.followed and len(settled) < len(waiting) and time.monotonic() < deadline \
                    and not job.cancelled.is_set():
                self._account(job, receipts, waiting, settled, timeout=0.5)
            job.state = "cancelled" if job.cancelled.is_set() else "finished"
            if job.followed and len(settled) < len(waiting) and not job.cancelled.is_set():
                job.note = (f"{len(waiting) - len(settled)} written events were not reported delivered or "
                            f"dead-lettered within {FOLLOW_S / 60:.0f} minutes: see the overview")
            elif not job.followed:
                job.note = f"over {FOLLOWED} events: their delivery is not followed here; see the overview"
            log.info("console: replay %s of %s %s: written %s of %s", job.id, job.window.integration, job.state,
                     job.written, job.total)
        except Exception as exc:  # logged with the job; the page says it failed
            job.state, job.note = "failed", f"{type(exc).__name__}: {str(exc)[:200]}"
            log.exception("console: replay %s failed", job.id)
        finally:
            receipts.close()

    def _account(self, job: Job, receipts: Any, waiting: set[tuple[str, str]], settled: set[tuple[str, str]],
                 timeout: float = 0.0) -> None:
        """Count what the receipts say became of the events written, (integration, messageId) each."""
        for message in receipts.consume(num_messages=500, timeout=timeout):
            if message.error() is not None:
                continue
            try:
                receipt = orjson.loads(message.value())
            except orjson.JSONDecodeError:
                continue
            name = str(receipt.get("integration"))
            for outcome in receipt.get("outcomes") or []:
                state = outcome.get("state")
                if state not in ("delivered", "dead"):
                    continue
                for message_id in outcome.get("messageIds") or []:
                    key = (name, message_id)
                    if key in waiting and key not in settled:
                        settled.add(key)
                        if state == "delivered":
                            job.delivered += 1
                        else:
                            job.dead += 1
