"""`eventrouter deadletters list | show | reinject`: what was dead-lettered, why, and sending it again
after a fix.

Two kinds of dead-letter topic: the worker's `<prefix>.invalid` (undecodable, invalid, unknown writeKey,
a playbook that failed; the original is the raw event) and each integration's `<prefix>.dlq.<name>`
(what the vendor refused or retries gave up on; the original is the Outbound record).

Re-injection, for the letters chosen (by reason, integration, time):
- an integration's dead letter: its Outbound record is written back to the integration's topic (same
  messageId, fresh retry budget); the live forwarder delivers it.
- a worker's dead letter: the raw event is routed again by the current config, to the letter's
  integration alone (a playbook failure) or to every integration of its pipeline (it was never routed);
  one that is still not valid is reported, not dead-lettered again.
Never twice, and never what was delivered: a letter already re-injected (the compacted
`<prefix>.reinjected` ledger, written once the records are acknowledged) is skipped, and so is an event
whose receipt says the integration has delivered it since (a replay, say).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from eventrouter.ops.ranges import Record, Span, find_span, read_span
from eventrouter.ops.reroute import RerouteReport, route_one
from schemas import EventCodec, Topics, deadletter_codec, outbound_codec
from schemas.errors import DecodeError
from schemas.runtime.kafka import ensure_topics
from streams.router import Output, Router
from streams.worker import OutputWriter


@dataclass(frozen=True)
class Letter:
    """One dead letter as read back."""

    topic: str
    partition: int
    offset: int
    record: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def line(self) -> str:
        r = self.record
        return (f"{self.partition}:{self.offset}  {r['reason']:<28} stage={r['stage']:<8} "
                f"integration={r.get('integration') or '-'} messageId={r.get('messageId') or '-'} "
                f"attempts={r.get('attempts') or 0}  {str(r.get('message') or '')[:100]}")


def letters(bootstrap: str, span: Span, *, reason: str | None = None, integration: str | None = None,
            client: Mapping[str, Any] | None = None) -> Iterator[Letter]:
    """The dead letters of `span`, those whose reason starts with `reason` and of `integration` if given."""
    codec = deadletter_codec()
    for record in read_span(bootstrap, span, client=client):
        try:
            letter = codec.decode(record.value)
        except DecodeError:
            continue
        if reason and not str(letter["reason"]).startswith(reason):
            continue
        if integration and letter.get("integration") != integration:
            continue
        yield Letter(span.topic, record.partition, record.offset, letter)


def describe(letter: Letter) -> dict[str, Any]:
    """The letter for a person: the original decoded where it can be (the writeKey masked), bytes otherwise."""
    record = {k: v for k, v in letter.record.items() if k != "originalBytes"}
    record["originalHeaders"] = [{"key": h["key"], "value": (h["value"] or b"").decode("utf-8", "replace")}
                                 for h in record.get("originalHeaders") or []]
    original: bytes = letter.record["originalBytes"]
    try:
        if record["stage"] == "deliver":
            outbound = outbound_codec().decode(original)
            outbound["payload"] = orjson.loads(outbound["payload"])
            record["original"] = outbound
        else:
            event = EventCodec().decode(original)
            if "writeKey" in event:
                event["writeKey"] = "***"  # a credential of ours: never shown
            record["original"] = event
    except (DecodeError, ValueError, TypeError):
        record["original"] = {"undecodable": True, "bytes": len(original), "head": original[:64].hex()}
    return {"at": letter.where, **record}


@dataclass
class ReinjectReport:
    chosen: int = 0
    reinjected: Counter[str] = field(default_factory=Counter)   # integration -> events written again
    already_reinjected: int = 0
    already_delivered: int = 0
    not_reinjectable: int = 0                                    # an original that is not a record at all
    rerouted: RerouteReport = field(default_factory=lambda: RerouteReport("(each letter's)"))
    sent: list[tuple[str, str]] = field(default_factory=list)    # (integration, messageId) written again

    def lines(self) -> list[str]:
        out = [f"dead letters chosen: {self.chosen}"]
        out += [f"re-injected into {name}: {n}" for name, n in sorted(self.reinjected.items())]
        out += [f"skipped, re-injected before: {self.already_reinjected}",
                f"skipped, delivered since: {self.already_delivered}"]
        if self.not_reinjectable:
            out.append(f"not re-injectable (original undecodable): {self.not_reinjectable}")
        out += [f"routing: {line}" for line in self.rerouted.lines()[2:]]
        return out


def ledger(bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None) -> set[str]:
    """The dead letters re-injected so far (topic/partition/offset)."""
    ensure_topics(bootstrap, [topics.reinjected], partitions=1, client=client,
                  config={"cleanup.policy": "compact", "retention.ms": "-1"})
    span = find_span(bootstrap, topics.reinjected, client=client)
    return {r.key.decode() for r in read_span(bootstrap, span, client=client) if r.key and r.value}


def delivered(bootstrap: str, topics: Topics, integrations: set[str],
              client: Mapping[str, Any] | None = None) -> set[tuple[str, str]]:
    """(integration, messageId) of every event a receipt says was delivered."""
    ensure_topics(bootstrap, [topics.receipts], client=client)
    out: set[tuple[str, str]] = set()
    for record in read_span(bootstrap, find_span(bootstrap, topics.receipts, client=client), client=client):
        if not record.value or (record.key or b"").decode() not in integrations:
            continue
        receipt = orjson.loads(record.value)
        for outcome in receipt.get("outcomes") or []:
            if outcome.get("state") == "delivered":
                out.update((receipt["integration"], m) for m in outcome.get("messageIds") or [])
    return out


def reinject(bootstrap: str, topics: Topics, router: Router, chosen: list[Letter], *, dry_run: bool = False,
             client: Mapping[str, Any] | None = None) -> ReinjectReport:
    """Write the chosen letters' events again (see the module's docstring); returns once acknowledged."""
    report = ReinjectReport(chosen=len(chosen))
    done = ledger(bootstrap, topics, client)
    names = {str(letter.record.get("integration") or "") for letter in chosen} | set(router.routes)
    sent = delivered(bootstrap, topics, names, client)
    outbound = outbound_codec()
    outputs: list[Output] = []
    marks: list[Output] = []
    for letter in chosen:
        if letter.where in done:
            report.already_reinjected += 1
            continue
        name, message_id = letter.record.get("integration"), letter.record.get("messageId")
        if name and message_id and (name, message_id) in sent:
            report.already_delivered += 1
            continue
        original: bytes = letter.record["originalBytes"]
        if letter.record["stage"] == "deliver":
            try:
                record = outbound.decode(original)
            except DecodeError:
                report.not_reinjectable += 1
                continue
            user = record.get("userId") or record.get("anonymousId")
            outputs.append(Output(topics.integration(record["integration"]), user.encode() if user else None,
                                  original, record["integration"]))
            report.reinjected[record["integration"]] += 1
            report.sent.append((record["integration"], str(record["messageId"])))
        else:
            headers = [(h["key"], h["value"]) for h in letter.record.get("originalHeaders") or []]
            raw = Record(letter.record["sourcePartition"], letter.record["sourceOffset"], 0, None, original, headers)
            still_invalid = sum(report.rerouted.invalid.values())
            routed = route_one(router, raw, letter.record["sourceTopic"], name or None, report.rerouted)
            if sum(report.rerouted.invalid.values()) > still_invalid:
                continue  # not valid under this config either: left for a later fix, not marked
            fresh = [o for o in routed if o.integration is None or (o.integration, message_id) not in sent]
            for output in fresh:
                if output.topic != topics.invalid:
                    report.reinjected[output.integration or "?"] += 1
                    report.sent.append((output.integration or "?", str(message_id)))
            outputs.extend(fresh)
        marks.append(Output(topics.reinjected, letter.where.encode(), orjson.dumps({"to": "reinjected"})))
    if not dry_run and marks:
        writer = OutputWriter(bootstrap, client or {})
        writer.start()
        writer.write_blocking(outputs)
        writer.write_blocking(marks)  # only once the events are durable: a crash between re-injects again
        writer.close()
    return report
