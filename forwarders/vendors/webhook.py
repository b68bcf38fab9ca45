"""A generic webhook: POST JSON, one event (or, with `batch`, an array of up to `max_events`).

Each request carries `Idempotency-Key` (the messageId; for a batch, a hash of its messageIds) and, with
a `secret`, `X-Eventrouter-Signature: sha256=<hex>`, an HMAC-SHA256 over `<timestamp>.<body>` with the
timestamp in `X-Eventrouter-Timestamp`, so a receiver can check origin and freshness. Basic or Bearer
auth and extra headers are settings. The destination is guarded (forwarders/ssrf.py): https only, no
private, loopback or link-local targets unless `allow_http` / `allow_private` say so, checked at load
and before every send; redirects are never followed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field

from forwarders.ssrf import check_config, check_url
from forwarders.vendors.base import Built, Item, Request, Settings, Vendor, chunks, dumps, payload_size


class WebhookSettings(Settings):
    url: str
    secret: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    batch: bool = False
    max_events: int = Field(100, ge=1, le=10_000)
    allow_http: bool = False
    allow_private: bool = False


def signature(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Webhook(Vendor):
    kind = "webhook"
    settings_type: ClassVar[type[Settings]] = WebhookSettings
    max_bytes = 5_000_000

    def __init__(self, connection: dict[str, Any]) -> None:
        super().__init__(connection)
        settings = self.settings
        assert isinstance(settings, WebhookSettings)
        self.endpoint = settings.endpoint or settings.url
        check_config(self.endpoint, allow_http=settings.allow_http, allow_private=settings.allow_private)
        self.max_events = settings.max_events if settings.batch else 1  # type: ignore[misc]

    def before_send(self, request: Request) -> None:
        settings = self.settings
        assert isinstance(settings, WebhookSettings)
        check_url(request.url, allow_http=settings.allow_http, allow_private=settings.allow_private)

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
                basic = base64.b64encode(f"{settings.username}:{settings.password or ''}".encode()).decode()
                headers["Authorization"] = f"Basic {basic}"
            requests.append(Request(self.endpoint, body, tuple(run), headers))
        return Built(requests)
