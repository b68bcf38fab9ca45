"""`eventrouter preview`: what an integration would receive from an event, with no Kafka. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from schemas.config import Config
from schemas.playbook.route import PlaybookError, Route
from streams.normalize import normalized


def preview(config: Config, integration: str, event: Mapping[str, Any],
            received: dt.datetime | None = None) -> dict[str, Any]:
    """{"integration", "eventName", "payload"}, or {"integration", "filtered": rule}, or {"error": reason}."""
    spec = config.integration(integration)  # KeyError: no such integration
    route = Route(spec)  # code hooks: only from modules in EVENTROUTER_CODE_MODULES
    event = normalized(event, received, config.settings.max_future_s)
    try:
        outcome = route.decide(event)
    except PlaybookError as exc:
        return {"integration": integration, "error": exc.reason, "message": exc.message}
    if outcome.filtered_by is not None:
        return {"integration": integration, "filtered": outcome.filtered_by}
    return {"integration": integration, "eventName": outcome.event_name, "payload": outcome.payload}
