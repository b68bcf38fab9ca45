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


@dataclass(frozen=True, slots=True)
class Destination:
    kind: str                   # the config's `kind`, and the name of every file of the vendor
    title: str                  # as people write it
    aliases: tuple[str, ...]    # other names of it in an event's `integrations` map (lower case)
    docs: str                   # the vendor's API reference the module follows ("" for our own)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name an event's `integrations` map may switch this destination with (lower case)."""
        return (self.kind, self.title.lower(), *self.aliases)


CATALOGUE: Final = (
    Destination("ga4", "Google Analytics 4", ("google analytics",),
                "https://developers.google.com/analytics/devguides/collection/protocol/ga4"),
    Destination("meta_capi", "Facebook Conversions API", ("meta conversions api", "facebook pixel"),
                "https://developers.facebook.com/docs/marketing-api/conversions-api"),
    Destination("amplitude", "Amplitude", (), "https://amplitude.com/docs/apis/analytics/http-v2"),
    Destination("mixpanel", "Mixpanel", (), "https://developer.mixpanel.com/reference/import-events"),
    Destination("braze", "Braze", (), "https://www.braze.com/docs/api/endpoints/user_data/post_user_track"),
    Destination("posthog", "PostHog", (), "https://posthog.com/docs/api/capture"),
    Destination("webhook", "Webhooks", (), ""),
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
