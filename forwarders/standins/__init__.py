"""Local HTTP servers standing in for each vendor, enforcing its documented contract; used by the
tests, the benchmarks and the demo (never by production forwarders)."""

from __future__ import annotations

from forwarders.standins.amplitude import AmplitudeStandIn
from forwarders.standins.braze import BrazeStandIn
from forwarders.standins.ga4 import GA4StandIn
from forwarders.standins.meta_capi import MetaStandIn
from forwarders.standins.mixpanel import MixpanelStandIn
from forwarders.standins.server import Answer, Incoming, StandIn
from forwarders.standins.webhook import WebhookStandIn

__all__ = ["AmplitudeStandIn", "Answer", "BrazeStandIn", "GA4StandIn", "Incoming", "MetaStandIn",
           "MixpanelStandIn", "StandIn", "WebhookStandIn"]
