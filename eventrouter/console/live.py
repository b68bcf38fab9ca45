"""The Live events screen's data: what one open view is sent. A view watches the events coming in (the raw
topic, every pipeline) or one integration's (its topic: the payload its playbook made), filtered by event
name, type and userId, and each event's outcome at each integration as the forwarders' receipts report it
(delivered with the vendor's status, retrying, or dead-lettered with the reason and an excerpt of the
vendor's answer, scrubbed where it was written). It is a sample: at most PER_SECOND events a second, and
the outcomes of the newest KEPT events sent; personal data masked for a role without the right. Pure:
eventrouter/console/tail.py reads the topics and feeds the views.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from eventrouter.console.pii import masked_event

KEPT: Final = 500        # events a view remembers (and the page shows) at most
PER_SECOND: Final = 20   # events a view is sent a second at most: beyond it, counted as not shown
TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")
TEXT_CHARS: Final = 200  # a filter's text at most


@dataclass(frozen=True)
class Filter:
    name: str = ""      # the event's name contains it (any case)
    type: str = ""      # one of TYPES, or any
    user: str = ""      # the userId (else the anonymousId) is exactly it
    pipeline: str = ""  # the pipeline (its writeKey's) is it

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filter:
        kind = query.get("type", "")
        return cls(query.get("name", "")[:TEXT_CHARS].strip(), kind if kind in TYPES else "",
                   query.get("user", "")[:TEXT_CHARS].strip(), query.get("pipeline", "")[:TEXT_CHARS].strip())

    def admits(self, kind: str, name: str, user: str, pipeline: str = "") -> bool:
        return ((not self.type or kind == self.type) and (not self.name or self.name.lower() in name.lower())
                and (not self.user or self.user == user) and (not self.pipeline or self.pipeline == pipeline))


@dataclass(frozen=True)
class Row:
    """One event as a view shows it."""

    message_id: str
    at_ms: int
    type: str
    name: str
    user: str
    pipeline: str
    payload: dict[str, Any]   # the event as it came in, or the payload the integration's playbook made

    def as_json(self, masked: bool) -> dict[str, Any]:
        return {"id": self.message_id, "at": self.at_ms, "type": self.type, "name": self.name,
                "user": "(masked)" if masked and "@" in self.user else self.user, "pipeline": self.pipeline,
                "payload": masked_event(self.payload) if masked else self.payload}


UNKNOWN_KEY: Final = "(no pipeline: an unknown writeKey)"


def incoming(event: Mapping[str, Any], at_ms: int, pipelines: Mapping[str, str] | None = None) -> Row:
    """A raw event as the gateway or an SDK wrote it, with the pipeline its writeKey names in `pipelines`
    (writeKey -> pipeline); the writeKey itself is never shown."""
    payload = {k: v for k, v in event.items() if k != "writeKey"}
    kind = str(event.get("type") or "")
    name = str(event.get("event") or event.get("name") or "")
    pipeline = (pipelines or {}).get(str(event.get("writeKey") or ""), UNKNOWN_KEY)
    return Row(str(event.get("messageId") or ""), at_ms, kind, name,
               str(event.get("userId") or event.get("anonymousId") or ""), pipeline, payload)


def routed(record: Mapping[str, Any], payload: dict[str, Any], at_ms: int) -> Row:
    """An Outbound record of an integration's topic, with its payload parsed."""
    return Row(str(record.get("messageId") or ""), at_ms, str(record.get("type") or ""),
               str(record.get("eventName") or ""), str(record.get("userId") or record.get("anonymousId") or ""),
               str(record.get("pipeline") or ""), payload)


def outcomes(receipt: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(messageId, outcome) for every event a receipt accounts for; the outcome as a view shows it."""
    out: list[tuple[str, dict[str, Any]]] = []
    name = str(receipt.get("integration") or "")
    for outcome in receipt.get("outcomes") or []:
        shown = {"integration": name, "state": outcome.get("state"), "status": outcome.get("status"),
                 "attempts": outcome.get("attempts"), "reason": outcome.get("reason"),
                 "answer": outcome.get("answer")}
        out.extend((str(m), shown) for m in outcome.get("messageIds") or [])
    return out


@dataclass
class View:
    """One open view: what it watches, what it was sent (the newest KEPT), its rate."""

    integration: str | None          # None: the events coming in
    filter: Filter
    masked: bool
    sent: OrderedDict[str, None] = field(default_factory=OrderedDict)
    not_shown: int = 0               # events that matched beyond the rate
    _second: int = 0
    _in_second: int = 0

    def full(self, second: int) -> bool:
        """Whether it was sent PER_SECOND events in `second` already."""
        return second == self._second and self._in_second >= PER_SECOND

    def offer(self, row: Row, now: float | None = None) -> dict[str, Any] | None:
        """The row to send, or None: not for this view's filter, or over its rate (counted)."""
        if not self.filter.admits(row.type, row.name, row.user, row.pipeline):
            return None
        second = int(time.monotonic() if now is None else now)
        if second != self._second:
            self._second, self._in_second = second, 0
        if self._in_second >= PER_SECOND:
            self.not_shown += 1
            return None
        self._in_second += 1
        self.sent[row.message_id] = None
        while len(self.sent) > KEPT:
            self.sent.popitem(last=False)
        return row.as_json(self.masked)

    def outcome(self, message_id: str, outcome: Mapping[str, Any]) -> dict[str, Any] | None:
        """The outcome to send: of an event this view was sent, at its integration (any, when incoming)."""
        if message_id not in self.sent or (self.integration is not None and
                                           outcome.get("integration") != self.integration):
            return None
        shown = {"id": message_id, **outcome}
        if self.masked:
            shown = masked_event(shown)
        return shown
