"""The playbook editor's test panel: what an integration would make of one event under a playbook being
edited, and the exact HTTP request(s) its vendor module would send. Nothing is sent, nothing is written:
pure. Secrets stay references: the vendor builds its request from the connection as the revision holds
it, so a key appears as `${AMPLITUDE_API_KEY}`, never its value."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from eventrouter.console.changes import set_playbook
from forwarders.vendors import Item, vendor_for
from schemas.config import config_from_document
from schemas.errors import ConfigurationError, EventRouterError
from schemas.playbook.route import PlaybookError, Route
from streams.normalize import normalized

# The panel sends nothing, so no destination is private to it: the guard's scheme check still applies.
_EVERYWHERE = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
SAMPLES: dict[str, dict[str, Any]] = {
    "track": {"type": "track", "event": "Order Completed", "userId": "user-42",
              "properties": {"order_id": "o-1001", "revenue": 59.9, "currency": "EUR",
                             "products": [{"product_id": "p-1", "price": 29.95, "quantity": 2}]},
              "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "traits": {"email": "ana@example.com"}}},
    "identify": {"type": "identify", "userId": "user-42",
                 "traits": {"email": "ana@example.com", "name": "Ana Lima", "plan": "pro"}},
    "page": {"type": "page", "name": "Pricing", "anonymousId": "anon-7",
             "properties": {"url": "https://shop.example/pricing", "title": "Pricing"}},
    "screen": {"type": "screen", "name": "Checkout", "userId": "user-42", "properties": {"step": 2}},
    "group": {"type": "group", "groupId": "acme", "userId": "user-42", "traits": {"name": "Acme", "employees": 120}},
    "alias": {"type": "alias", "previousId": "anon-7", "userId": "user-42"},
}


@dataclass(frozen=True)
class ShownRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: str                      # pretty JSON when it is JSON


@dataclass
class Trial:
    problems: list[str] = field(default_factory=list)   # the playbook or the event, each with its path
    filtered_by: str | None = None
    error: str | None = None        # the playbook failed on this event: dead-lettered with this reason
    event_name: str | None = None
    payload: dict[str, Any] | None = None
    requests: list[ShownRequest] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)   # the vendor module would not send it: why
    note: str | None = None         # why no request is shown


def problem_lines(exc: ConfigurationError) -> list[str]:
    """A configuration error as one problem per line, each with its path: "config: N problems" and its
    indented lines, or a one-problem message (a YAML error's several lines joined)."""
    lines = str(exc).splitlines()
    if len(lines) > 1 and lines[1].startswith("  ") and " problem" in lines[0]:
        return [line.strip() for line in lines[1:] if line.strip()]
    return [" ".join(line.strip() for line in lines if line.strip())]


def parse_event(text: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        event = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, f"event: not JSON ({exc})"
    if not isinstance(event, dict):
        return None, "event: must be a JSON object"
    return event, None


def trial(document: Mapping[str, Any], integration: str, playbook_text: str, event_text: str,
          received: dt.datetime | None = None) -> Trial:
    out = Trial()
    try:
        config = config_from_document(set_playbook(document, integration, playbook_text), "playbook")
    except ConfigurationError as exc:
        out.problems = problem_lines(exc)
        return out
    event, problem = parse_event(event_text)
    if event is None:
        out.problems = [problem or "event: not readable"]
        return out
    spec = config.integration(integration)
    try:
        normal = normalized(event, received, config.settings.max_future_s)
        outcome = Route(spec).decide(normal)
    except PlaybookError as exc:
        out.error = f"{exc.reason}: {exc.message}"
        return out
    except (EventRouterError, ValueError, TypeError) as exc:
        out.problems = [f"event: {exc}"]
        return out
    if outcome.filtered_by is not None:
        out.filtered_by = outcome.filtered_by
        return out
    out.event_name, out.payload = outcome.event_name, outcome.payload
    item = Item(str(normal.get("messageId") or "trial-message-id"), outcome.payload or {}, outcome.event_name,
                str(normal.get("type")), normal.get("userId"), normal.get("anonymousId"),
                _ms(normal.get("timestamp")))
    try:
        vendor = vendor_for(spec.kind, spec.connection, _EVERYWHERE)
        built = vendor.build([item])
    except ConfigurationError as exc:
        out.note = f"no request shown: {exc}"
        return out
    except Exception as exc:  # noqa: BLE001 - the forwarder would dead-letter this event as build_failed
        out.note = f"the vendor module cannot build a request for it ({type(exc).__name__}): dead-lettered"
        return out
    out.refused = list(built.refused.values())
    out.requests = [ShownRequest(r.method, r.url, dict(r.headers), _pretty(r.body)) for r in built.requests]
    return out


def _ms(timestamp: Any) -> int:
    if isinstance(timestamp, str):
        try:
            return int(dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return 0
    return int(timestamp) if isinstance(timestamp, int) else 0


def _pretty(body: bytes) -> str:
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
