"""Local HTTP servers standing in for each vendor, enforcing its documented contract; one module per
destination of the catalogue (`<kind>.py`, schemas/catalogue.py). Used by the tests, the benchmarks and
the demo, never by the forwarders."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from eventrouter.dev.standins.amplitude import AmplitudeStandIn
from eventrouter.dev.standins.braze import BrazeStandIn
from eventrouter.dev.standins.customerio import CustomerIOStandIn
from eventrouter.dev.standins.ga4 import GA4StandIn
from eventrouter.dev.standins.google_ads import GoogleAdsStandIn
from eventrouter.dev.standins.hubspot import HubSpotStandIn
from eventrouter.dev.standins.intercom import IntercomStandIn
from eventrouter.dev.standins.iterable import IterableStandIn
from eventrouter.dev.standins.klaviyo import KlaviyoStandIn
from eventrouter.dev.standins.linkedin import LinkedInStandIn
from eventrouter.dev.standins.meta_capi import MetaStandIn
from eventrouter.dev.standins.mixpanel import MixpanelStandIn
from eventrouter.dev.standins.pinterest import PinterestStandIn
from eventrouter.dev.standins.posthog import PostHogStandIn
from eventrouter.dev.standins.reddit import RedditStandIn
from eventrouter.dev.standins.segment import SegmentStandIn
from eventrouter.dev.standins.server import Answer, Incoming, StandIn
from eventrouter.dev.standins.snapchat import SnapchatStandIn
from eventrouter.dev.standins.tiktok import TikTokStandIn
from eventrouter.dev.standins.webhook import WebhookStandIn
from schemas.catalogue import by_kind

STAND_INS: Final[Mapping[str, type[StandIn]]] = by_kind(__name__, StandIn, "name")

__all__ = ["AmplitudeStandIn", "Answer", "BrazeStandIn", "CustomerIOStandIn", "GA4StandIn", "GoogleAdsStandIn",
           "HubSpotStandIn", "Incoming", "IntercomStandIn", "IterableStandIn", "KlaviyoStandIn", "LinkedInStandIn",
           "MetaStandIn", "MixpanelStandIn", "PinterestStandIn", "PostHogStandIn", "RedditStandIn", "STAND_INS",
           "SegmentStandIn", "SnapchatStandIn", "StandIn", "TikTokStandIn", "WebhookStandIn"]
