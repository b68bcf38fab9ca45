"""The destinations eventrouter delivers to: one entry per vendor, the one list every part reads.

The config accepts these `kind`s and no other; the worker knows each by the names an event's
`integrations` map may use for it (Segment's destination names); the forwarders find the vendor module
`forwarders/vendors/<kind>.py`, and the development tools the stand-in `eventrouter/dev/standins/<kind>.py`;
the starter kit is `schemas/playbook/starters/<kind>.yaml`. `tests/unit/test_catalogue.py` proves that all of them
agree with this list. Adding a vendor: docs/adding-a-vendor.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final, TypeVar

T = TypeVar("T")
CATEGORIES: Final = ("advertising", "analytics", "marketing", "forwarding")


@dataclass(frozen=True, slots=True)
class Destination:
    kind: str                   # the config's `kind`, and the name of every file of the vendor
    title: str                  # as people write it
    aliases: tuple[str, ...]    # other names of it in an event's `integrations` map (lower case)
    docs: str                   # the vendor's API reference the module follows ("" for our own)
    category: str               # advertising, analytics, marketing or forwarding (CATEGORIES)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name an event's `integrations` map may switch this destination with (lower case)."""
        return (self.kind, self.title.lower(), *self.aliases)


CATALOGUE: Final = (
    # advertising: the conversion APIs, which match events to ad clicks and people
    Destination("meta_capi", "Facebook Conversions API", ("meta conversions api", "facebook pixel"),
                "https://developers.facebook.com/docs/marketing-api/conversions-api", "advertising"),
    Destination("google_ads", "Google Ads", ("google ads conversions", "google enhanced conversions"),
                "https://developers.google.com/google-ads/api/reference/rpc/v26/ConversionUploadService",
                "advertising"),
    Destination("tiktok", "TikTok Events API", ("tiktok conversions",),
                "https://business-api.tiktok.com/portal/docs?id=1771100865818625", "advertising"),
    Destination("snapchat", "Snap Conversions API", ("snapchat conversions api", "snapchat conversions"),
                "https://developers.snap.com/api/marketing-api/Conversions-API", "advertising"),
    Destination("pinterest", "Pinterest Conversions API", ("pinterest tag",),
                "https://developers.pinterest.com/docs/api/v5/events-create/", "advertising"),
    Destination("reddit", "Reddit Conversions API", ("reddit pixel",),
                "https://ads-api.reddit.com/docs/v3/operations/Post%20Conversion%20Events", "advertising"),
    Destination("linkedin", "LinkedIn Conversions API", ("linkedin ads",),
                "https://learn.microsoft.com/en-us/linkedin/marketing/integrations/ads-reporting/conversions-api",
                "advertising"),
    # analytics
    Destination("ga4", "Google Analytics 4", ("google analytics",),
                "https://developers.google.com/analytics/devguides/collection/protocol/ga4", "analytics"),
    Destination("amplitude", "Amplitude", (), "https://amplitude.com/docs/apis/analytics/http-v2", "analytics"),
    Destination("mixpanel", "Mixpanel", (), "https://developer.mixpanel.com/reference/import-events", "analytics"),
    Destination("posthog", "PostHog", (), "https://posthog.com/docs/api/capture", "analytics"),
    # marketing automation and CRM
    Destination("braze", "Braze", (), "https://www.braze.com/docs/api/endpoints/user_data/post_user_track",
                "marketing"),
    Destination("customerio", "Customer.io", ("customer.io (actions)",),
                "https://docs.customer.io/integrations/api/track/", "marketing"),
    Destination("klaviyo", "Klaviyo", ("klaviyo (actions)",),
                "https://developers.klaviyo.com/en/reference/create_event", "marketing"),
    Destination("iterable", "Iterable", ("iterable (actions)",), "https://api.iterable.com/api/docs", "marketing"),
    Destination("hubspot", "HubSpot", ("hubspot cloud mode (actions)",),
                "https://developers.hubspot.com/docs/api-reference/2026-03/overview", "marketing"),
    Destination("intercom", "Intercom", ("intercom cloud mode (actions)",),
                "https://developers.intercom.com/docs/references/rest-api/api.intercom.io/data-events", "marketing"),
    # forwarding: the events as they are, to a Segment workspace or a URL of the user's
    Destination("segment", "Segment", (),
                "https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/", "forwarding"),
    Destination("webhook", "Webhooks", (), "", "forwarding"),
)
KINDS: Final = tuple(d.kind for d in CATALOGUE)
_BY_KIND: Final = {d.kind: d for d in CATALOGUE}


def destination(kind: str) -> Destination:
    """The catalogue's entry for `kind` (KeyError when there is none: the config refuses such a kind)."""
    return _BY_KIND[kind]


def known_kind(kind: str) -> str:
    """A pydantic check: `kind` is in the catalogue."""
    if kind not in _BY_KIND:
        raise ValueError(f"unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    return kind


def by_kind(package: str, base: type[T], attribute: str) -> dict[str, type[T]]:
    """For each kind of the catalogue, the one subclass of `base` in module `<package>.<kind>` whose
    `attribute` is that kind (ImportError when the module is missing or holds none or several)."""
    found: dict[str, type[T]] = {}
    for kind in KINDS:
        module = importlib.import_module(f"{package}.{kind}")
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base) and c is not base
                   and getattr(c, attribute, None) == kind]
        if len(classes) != 1:
            raise ImportError(f"{module.__name__} defines {len(classes)} {base.__name__} classes with {attribute} "
                              f"{kind!r}, not one")
        found[kind] = classes[0]
    return found
