"""One module per vendor; `vendor_for(kind, connection)` makes the one an integration names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from forwarders.vendors.amplitude import Amplitude
from forwarders.vendors.base import Built, Item, Reply, Request, Vendor, read_status, retry_after
from forwarders.vendors.braze import Braze
from forwarders.vendors.ga4 import GA4
from forwarders.vendors.meta_capi import MetaCAPI
from forwarders.vendors.mixpanel import Mixpanel
from forwarders.vendors.webhook import Webhook

VENDORS: Final[Mapping[str, type[Vendor]]] = {
    v.kind: v for v in (GA4, MetaCAPI, Amplitude, Mixpanel, Braze, Webhook)}


def vendor_for(kind: str, connection: Mapping[str, Any]) -> Vendor:
    """The vendor module for `kind`, with its resolved connection settings (ConfigurationError if bad)."""
    return VENDORS[kind](dict(connection))


__all__ = ["VENDORS", "Built", "Item", "Reply", "Request", "Vendor", "read_status", "retry_after", "vendor_for"]
