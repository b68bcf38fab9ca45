"""The console's dead letters: what the worker (`<prefix>.invalid`) and each integration's forwarder
(`<prefix>.dlq.<name>`) gave up on, counted by reason, the newest listed, one shown whole, and re-injected
after a fix, with a dry run first. Read on demand from the end of each topic (the newest LOOK_BACK letters
of each partition; the total comes from the offsets, never a scan) by consumers that never commit; the
re-injection is `eventrouter deadletters reinject`'s (eventrouter/ops/deadletters.py): never twice, never
what was delivered since."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventrouter.ops.deadletters import Letter, describe, letters, reinject
from eventrouter.ops.ranges import Span, find_span
from schemas import Topics
from schemas.config import Config
from schemas.errors import ConfigurationError
from streams.router import Router

LOOK_BACK = 2_000  # the letters per partition a page reads, from the end
LISTED = 50        # the newest letters a page lists
WORKER = "invalid"  # the worker's dead letters, beside the integrations' names


@dataclass(frozen=True)
class LetterRow:
    partition: int
    offset: int
    at_ms: int
    reason: str
    stage: str
    integration: str
    message_id: str
    attempts: int
    message: str                   # the reason in words (secrets scrubbed where it was written)
    vendor_status: int | None      # the vendor's HTTP status, for a letter of the forwarder


@dataclass
class LetterPage:
    where: str                     # an integration's name, or WORKER
    total: int                     # every letter the topic holds (from its offsets)
    read: int                      # the newest ones read for the counts below
    reasons: Counter[str] = field(default_factory=Counter)
    newest: list[LetterRow] = field(default_factory=list)


def topic_of(topics: Topics, config: Config, where: str) -> str:
    """ConfigurationError: neither the worker nor an integration in force."""
    if where == WORKER:
        return topics.invalid
    if where not in {i.name for i in config.integrations}:
        raise ConfigurationError(f"where: no integration named {where!r}")
    return topics.dead_letters(where)


def _row(letter: Letter) -> LetterRow:
    r = letter.record
    return LetterRow(letter.partition, letter.offset, int(r.get("deadLetteredAt") or 0), str(r["reason"]),
                     str(r.get("stage") or ""), str(r.get("integration") or ""), str(r.get("messageId") or ""),
                     int(r.get("attempts") or 0), str(r.get("message") or "")[:300], r.get("vendorStatus"))


class Letters(Protocol):
    """What the console's handlers need of the dead letters (a fake in the handler tests)."""

    def totals(self, config: Config) -> dict[str, int]: ...

    def page(self, config: Config, where: str, reason: str) -> LetterPage: ...

    def one(self, config: Config, where: str, partition: int, offset: int) -> dict[str, Any] | None: ...

    def send_again(self, config: Config, revision: int, where: str, reason: str, *, dry_run: bool,
                   picked: Collection[tuple[int, int]] = ()) -> tuple[list[str], list[tuple[str, str]]]: ...


@dataclass(frozen=True)
class KafkaLetters:
    bootstrap: str
    topics: Topics
    client: Mapping[str, Any] | None = None

    def _span(self, topic: str) -> Span | None:
        try:
            return find_span(self.bootstrap, topic, client=self.client, timeout=10.0)
        except ConfigurationError:
            return None  # no such topic yet: nothing was dead-lettered

    def totals(self, config: Config) -> dict[str, int]:
        """Where -> how many letters its topic holds (from the offsets: no record is read)."""
        out = {}
        for where in (WORKER, *(i.name for i in config.integrations)):
            span = self._span(topic_of(self.topics, config, where))
            out[where] = span.count if span else 0
        return out

    def page(self, config: Config, where: str, reason: str) -> LetterPage:
        topic = topic_of(self.topics, config, where)
        span = self._span(topic)
        out = LetterPage(where, span.count if span else 0, 0)
        if span is None:
            return out
        recent = Span(topic, {p: max(low, span.end[p] - LOOK_BACK) for p, low in span.start.items()}, span.end)
        rows = [_row(letter) for letter in letters(self.bootstrap, recent, client=self.client)]
        out.read = len(rows)
        out.reasons = Counter(r.reason for r in rows)
        chosen = [r for r in rows if r.reason.startswith(reason)] if reason else rows
        out.newest = sorted(chosen, key=lambda r: (r.at_ms, r.offset), reverse=True)[:LISTED]
        return out

    def one(self, config: Config, where: str, partition: int, offset: int) -> dict[str, Any] | None:
        """The letter at `partition`:`offset`, described for a person (the writeKey masked), or None."""
        topic = topic_of(self.topics, config, where)
        found = list(letters(self.bootstrap, Span(topic, {partition: offset}, {partition: offset + 1}),
                             client=self.client))
        return describe(found[0]) if found else None

    def send_again(self, config: Config, revision: int, where: str, reason: str, *, dry_run: bool,
                   picked: Collection[tuple[int, int]] = ()) -> tuple[list[str], list[tuple[str, str]]]:
        """Re-inject the letters `picked` (partition, offset), or else every letter of `where` whose reason
        starts with `reason` (all when empty); the report's lines (a dry run counts and writes nothing) and
        the (integration, messageId) of each event written again."""
        topic = topic_of(self.topics, config, where)
        if picked:
            at = set(picked)
            span: Span | None = Span(topic, {p: min(o for q, o in at if q == p) for p, _ in at},
                                     {p: max(o for q, o in at if q == p) + 1 for p, _ in at})
        else:
            span = self._span(topic)
        chosen = [letter for letter in letters(self.bootstrap, span, reason=reason or None, client=self.client)
                  if not picked or (letter.partition, letter.offset) in at] if span else []
        report = reinject(self.bootstrap, self.topics, Router(config, revision, self.topics), chosen,
                          dry_run=dry_run, client=self.client)
        return report.lines(), [] if dry_run else report.sent
