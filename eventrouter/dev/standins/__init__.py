"""Local HTTP servers standing in for each vendor, enforcing its documented contract; one module per
destination of the catalogue (`<kind>.py`, schemas/catalogue.py). Used by the tests, the benchmarks and
the demo, never by the forwarders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from eventrouter.dev.standins.amplitude import AmplitudeStandIn
from eventrouter.dev.standins.braze import BrazeStandIn
from eventrouter.dev.standins.ga4 import GA4StandIn
from eventrouter.dev.standins.meta_capi import MetaStandIn
from eventrouter.dev.standins.mixpanel import MixpanelStandIn
from eventrouter.dev.standins.posthog import PostHogStandIn
from eventrouter.dev.standins.server import Answer, Incoming, StandIn
from eventrouter.dev.standins.webhook import WebhookStandIn
from schemas.catalogue import by_kind

STAND_INS: Final[Mapping[str, type[StandIn]]] = by_kind(__name__, StandIn, "name")

__all__ = ["STAND_INS", "AmplitudeStandIn", "Answer", "BrazeStandIn", "GA4StandIn", "Incoming", "MetaStandIn",
           "MixpanelStandIn", "PostHogStandIn", "StandIn", "WebhookStandIn"]
