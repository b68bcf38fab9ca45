"""One module per vendor, `<kind>.py`, for each destination of the catalogue (schemas/catalogue.py);
`vendor_for(kind, connection)` makes the one an integration names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from forwarders.ssrf import Network
from forwarders.vendors.base import Built, Item, Reply, Request, Vendor, read_status, retry_after
from schemas.catalogue import by_kind

VENDORS: Final[Mapping[str, type[Vendor]]] = by_kind(__name__, Vendor, "kind")


def vendor_for(kind: str, connection: Mapping[str, Any], networks: tuple[Network, ...] | None = None) -> Vendor:
    """The vendor module for `kind`, with its resolved connection settings (ConfigurationError if bad, or
    if its URL is refused on its face). `networks`: the operator's private networks (None: from the
    environment, EVENTROUTER_PRIVATE_NETWORKS)."""
    return VENDORS[kind](dict(connection), networks)


__all__ = ["VENDORS", "Built", "Item", "Reply", "Request", "Vendor", "read_status", "retry_after", "vendor_for"]
