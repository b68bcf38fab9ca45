"""What a user needs to know of each destination, from the catalogue and its vendor module's declarations:
the connection's keys, limits, what it deduplicates on (so whether a replay is safe), how old an event it
takes, what it wants hashed and which ids improve matching and where an event carries them. One source
for `eventrouter vendors`, the pages in docs/vendors/ and the console's catalogue."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Final

from forwarders.vendors import VENDORS
from forwarders.vendors.base import SECRET_WORDS, Settings, Vendor
from schemas.catalogue import CATALOGUE, destination

COMMON: Final = frozenset(Settings.model_fields)  # endpoint, allow_http, allow_private: every vendor has them


@dataclass(frozen=True, slots=True)
class Key:
    """One key of a connection."""

    name: str
    required: bool
    secret: bool        # give it as a `${ENV}` reference
    description: str


@dataclass(frozen=True, slots=True)
class Facts:
    kind: str
    title: str
    category: str                   # advertising, analytics, marketing or forwarding
    docs: str                       # the vendor's API reference
    summary: str                    # the module docstring's first paragraph
    endpoint: str                   # its default URL ("" when the connection names it)
    keys: tuple[Key, ...]           # the connection's own keys (not endpoint, allow_http, allow_private)
    max_events: int
    max_bytes: int
    rate_limit: str
    dedup_key: str | None
    max_age_s: float | None
    hashed: tuple[str, ...]
    match_ids: tuple[tuple[str, str], ...]  # (id, where an event carries it)
    oauth: bool                     # its requests carry a short-lived token from a refresh-token grant

    @property
    def replay_safe(self) -> bool:
        """Sending an event again is deduplicated by the vendor (a replay or a retry counts it once)."""
        return self.dedup_key is not None

    @property
    def window(self) -> str:
        return "any age" if self.max_age_s is None else f"up to {duration(self.max_age_s)} old"


def facts(kind: str) -> Facts:
    vendor: type[Vendor] = VENDORS[kind]
    entry = destination(kind)
    module = sys.modules[vendor.__module__]
    summary = " ".join((module.__doc__ or "").split("\n\n", 1)[0].split())
    keys = tuple(Key(name, field.is_required(), any(w in name for w in SECRET_WORDS),
                     " ".join((field.description or "").split()))
                 for name, field in vendor.settings_type.model_fields.items() if name not in COMMON)
    oauth = vendor.token_request is not Vendor.token_request
    return Facts(kind, entry.title, entry.category, entry.docs, summary, vendor.default_endpoint, keys,
                 vendor.max_events, vendor.max_bytes, vendor.rate_limit, vendor.dedup_key, vendor.max_age_s,
                 vendor.hashed, tuple(vendor.match_ids.items()), oauth)


def catalogue() -> list[Facts]:
    return [facts(entry.kind) for entry in CATALOGUE]


def duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:g} hours" if hours <= 72 else f"{hours / 24:g} days"


def size(n: int) -> str:
    return f"{n / 1_000_000:g} MB" if n >= 1_000_000 else f"{n / 1000:g} KB" if n >= 1000 else f"{n} bytes"
