"""A generic webhook: POST JSON, one event (or, with `batch`, an array of up to `max_events`).

Each request carries `Idempotency-Key` (the messageId; for a batch, a hash of its messageIds) and, with
a `secret`, `X-Eventrouter-Signature: sha256=<hex>`, an HMAC-SHA256 over `<timestamp>.<body>` with the
timestamp in `X-Eventrouter-Timestamp`, so a receiver can check origin and freshness. Basic or Bearer
auth and extra headers are settings. The destination is guarded as every vendor's is (forwarders/ssrf.py,
forwarders/transport.py): https only, no private, loopback or link-local targets unless `allow_http` /
`allow_private` (and the operator's EVENTROUTER_PRIVATE_NETWORKS) say so; redirects are never followed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from forwarders.ssrf import Network
from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps, payload_size
from schemas.secrets import PLAIN_HEADERS


class WebhookSettings(Settings):
    url: str
    """Where events are POSTed (https unless `allow_http`)."""
    secret: str | None = None
    """Signs each request: `X-Eventrouter-Signature: sha256=HMAC(secret, "<timestamp>.<body>")`."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra headers; values are `${ENV_VAR}` references, except Content-Type, Accept, Accept-Language,
    User-Agent and Cache-Control."""
    bearer_token: str | None = None
    """Sent as `Authorization: Bearer ...`."""
    username: str | None = None
    """With `password`: HTTP Basic auth."""
    password: str | None = None
    """With `username`: HTTP Basic auth."""
    batch: bool = False
    """true: a JSON array of up to `max_events` events per request; false: one event per request."""
    max_events: int = Field(100, ge=1, le=10_000)
    """With `batch`: most events per request."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhook(Vendor):
    kind = "webhook"
    dedup_key = "the Idempotency-Key header (if the receiver honours it)"
    settings_type: ClassVar[type[Settings]] = WebhookSettings
    max_bytes = 5_000_000
    endpoint_key = "url"

    def __init__(self, connection: dict[str, Any], networks: tuple[Network, ...] | None = None) -> None:
        super().__init__(connection, networks)
        settings = self.settings
        assert isinstance(settings, WebhookSettings)
        self.max_events = settings.max_events if settings.batch else 1  # type: ignore[misc]

    def secrets(self) -> list[str]:
        """The named secrets, every header value but a plain one's, and the basic auth as sent."""
        settings = self.settings
        assert isinstance(settings, WebhookSettings)
        out = [*super().secrets(), *(v for k, v in settings.headers.items() if k.lower() not in PLAIN_HEADERS)]
        if settings.username is not None:
            out.append(_basic(settings.username, settings.password))
        return out

    def endpoint_of(self, settings: Settings) -> str:
        assert isinstance(settings, WebhookSettings)
        return settings.endpoint or settings.url

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, WebhookSettings)
        requests = []
        for run in chunks(items, range(len(items)), self.max_events, self.max_bytes, payload_size):
            body = dumps([items[p].payload for p in run] if settings.batch else items[run[0]].payload)
            ids = [items[p].message_id for p in run]
            key = "batch-" + hashlib.sha256("\x1f".join(ids).encode()).hexdigest()[:40] if settings.batch else ids[0]
            headers = {"Content-Type": "application/json", "Idempotency-Key": key, **settings.headers}
            if settings.secret:
                stamp = str(int(time.time()))
                headers["X-Eventrouter-Timestamp"] = stamp
                headers["X-Eventrouter-Signature"] = signature(settings.secret, stamp, body)
            if settings.bearer_token:
                headers["Authorization"] = f"Bearer {settings.bearer_token}"
            elif settings.username is not None:
                headers["Authorization"] = f"Basic {_basic(settings.username, settings.password)}"
            requests.append(Request(self.endpoint, body, tuple(run), headers))
        return Built(requests)


def _basic(username: str, password: str | None) -> str:
    return base64.b64encode(f"{username}:{password or ''}".encode()).decode()
