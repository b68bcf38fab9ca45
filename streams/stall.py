"""No silent stall, in either engine. A consumer has been seen, rarely, to hold its partitions and fetch
nothing from them: Faust after a rebalance, librdkafka after a broker froze for a minute. Records that
wait on the worker's partitions (past the group's committed offset) while the engine hands none over for
`after_s` are a stall. The first remedy is the engine's own (Faust reads the partitions again from their
committed offsets; the default engine replaces its consumer); if that does not help, the worker stops
with exit code STALLED so that its supervisor (`eventrouter up`) starts a new one, which joins afresh.

StallWatch is pure (the engine asks the broker with `backlog_lookup`, on a consumer that never joins).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from schemas.runtime.kafka import admin_settings, consumer_settings, watermarks
from streams.worker import WorkerSettings

log = logging.getLogger(__name__)

REMEDY: Final = "remedy"  # the engine's own remedy: read again, or a new consumer
EXIT: Final = "exit"
STALLED: Final = 75  # the exit code of a worker that stopped because its engine stalled (EX_TEMPFAIL)


class StallWatch:
    """Counts the time since a record was last handed over. A new consumer generation or a record handed
    over starts the count again; nothing waiting (idle) is not a stall."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.last = time.monotonic()
        self.generation: int | None = None
        self.strikes = 0
        self.stopped = False
        self.rebalancing_since: float | None = None

    def moved(self, now: float) -> None:
        self.last, self.strikes = now, 0

    def due(self, now: float, generation: int) -> bool:
        """True when nothing was handed over for `after_s` in this generation: ask whether records wait."""
        if generation != self.generation:
            self.generation = generation
            self.moved(now)
        return not self.stopped and now - self.last >= self.after_s

    def verdict(self, now: float, waiting: bool | None) -> str | None:
        """REMEDY or EXIT when records wait; None when none do, or when that is not known (the broker did
        not answer: asked again after another `after_s`)."""
        if not waiting:
            if waiting is None:
                self.last = now
            else:
                self.moved(now)
            return None
        self.last = now  # the next verdict after another `after_s`
        return self._strike()

    def _strike(self) -> str:
        """The first stall in a row is met with the engine's remedy; the next one stops the worker."""
        self.strikes += 1
        if self.strikes == 1:
            return REMEDY
        self.stopped = True
        return EXIT

    def rebalancing(self, now: float, busy: bool) -> str | None:
        """A rebalance that has not ended after `after_s` is a stall too (a member that never gets its
        assignment, or recovery that never finishes): REMEDY (join the group again), then EXIT."""
        if not busy:
            self.rebalancing_since = None
            return None
        if self.rebalancing_since is None:
            self.rebalancing_since = now
        if self.stopped or now - self.rebalancing_since < self.after_s:
            return None
        self.rebalancing_since = now  # the next verdict after another `after_s`
        return self._strike()


class OrphanWatch:
    """The group's view, for a member that never rebalanced after another died: raw partitions not held
    by this worker whose records wait past a committed offset that has not moved for `after_s` (then
    `owners_lookup` tells whether a member holds them: its own StallWatch is on it; or none does)."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.since: dict[int, tuple[int, float]] = {}  # partition -> (committed offset, unchanged since)

    def orphaned(self, now: float, backlog: dict[int, tuple[int, int]], mine: set[int]) -> dict[int, tuple[int, int]]:
        """(committed, end) of each partition that has waited `after_s`; each is counted anew from now."""
        out = {}
        for partition, (committed, end) in backlog.items():
            if partition in mine or end <= committed:
                self.since.pop(partition, None)
                continue
            seen = self.since.get(partition)
            if seen is None or seen[0] != committed:
                self.since[partition] = (committed, now)
            elif now - seen[1] >= self.after_s:
                out[partition] = (committed, end)
                self.since[partition] = (committed, now)
        return out


def waiting_of(backlog: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """The partitions whose log ends past the committed offset: (committed, end) each."""
    return {p: ends for p, ends in backlog.items() if ends[1] > ends[0]}


def waiting_on(backlog: Callable[[list[int]], dict[int, tuple[int, int]]],
               partitions: list[int]) -> dict[int, tuple[int, int]] | None:
    """The waiting partitions, or None when the broker did not answer (a frozen broker is not a stall)."""
    from confluent_kafka import KafkaException

    try:
        return waiting_of(backlog(partitions)) if partitions else {}
    except KafkaException as exc:
        log.warning("whether records wait on raw partitions %s is not known: %s", partitions, exc)
        return None


def report(verdict: str, after_s: float, waiting: dict[int, tuple[int, int]], remedy: str) -> None:
    log.error("no record handed to the router for %.0f s while raw partitions %s hold records past the "
              "committed offset (committed, end: %s)", after_s, sorted(waiting), waiting)
    if verdict == REMEDY:
        log.error("%s (raw partitions %s)", remedy, sorted(waiting))
    else:
        log.error("still stalled: stopping with exit code %s so that the supervisor starts a new worker "
                  "(eventrouter up does)", STALLED)


def backlog_lookup(settings: WorkerSettings, topic: str,
                   timeout_s: float = 30.0) -> Callable[[list[int]], dict[int, tuple[int, int]]]:
    """partitions -> (the group's committed offset or the log start where it has none, the end of the log),
    read with a confluent-kafka consumer that never joins the group (made on first use)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer: Any = None

    def lookup(partitions: list[int]) -> dict[int, tuple[int, int]]:
        nonlocal consumer
        if consumer is None:
            consumer = Consumer(consumer_settings(settings.bootstrap, settings.app_id,
                                                  {"enable.auto.commit": False, **settings.client}))
        out = {}
        for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout_s):
            low, high = watermarks(consumer, topic, tp.partition, timeout_s)
            out[tp.partition] = (tp.offset if tp.offset >= 0 else low, high)
        return out
    return lookup


def owners_lookup(settings: WorkerSettings, topic: str, timeout_s: float = 10.0) -> Callable[[], set[int] | None]:
    """-> the raw partitions some member of the worker group holds, as the group coordinator says (None when
    it did not answer)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin: Any = None

    def lookup() -> set[int] | None:
        nonlocal admin
        if admin is None:
            admin = AdminClient(admin_settings(settings.bootstrap, settings.client))
        try:
            group = admin.describe_consumer_groups([settings.app_id], request_timeout=timeout_s)[settings.app_id]
            members = group.result(timeout=timeout_s).members
        except (KafkaException, TimeoutError) as exc:
            log.warning("which member holds which raw partition is not known: %s", exc)
            return None
        return {tp.partition for member in members for tp in member.assignment.topic_partitions if tp.topic == topic}
    return lookup


def committed_lookup(settings: WorkerSettings, topic: str) -> Callable[[list[int]], dict[int, int]]:
    """partitions -> the group's committed offset (or the log start where it has none)."""
    backlog = backlog_lookup(settings, topic)
    return lambda partitions: {p: ends[0] for p, ends in backlog(partitions).items()}
