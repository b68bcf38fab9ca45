"""Per vendor: a stand-in, a connection to it, payloads that carry a known id, and how to find that id in
what the stand-in accepted; so one conformance test runs for every vendor module."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from eventrouter.dev.standins import (
    AmplitudeStandIn,
    BrazeStandIn,
    GA4StandIn,
    MetaStandIn,
    MixpanelStandIn,
    PostHogStandIn,
    StandIn,
    WebhookStandIn,
)

SECRETS = {"ga4": "ga4-secret", "meta_capi": "meta-token", "amplitude": "amp-key", "mixpanel": "mp-secret",
           "braze": "braze-key", "posthog": "phc_test_key", "webhook": "hook-secret"}


@dataclass(frozen=True)
class VendorCase:
    kind: str
    stand_in: StandIn
    connection: dict[str, Any]             # secrets as values (in-process forwarders)
    connection_yaml: str                   # secrets as ${ENV} references (forwarder processes)
    payload: Callable[[int, str], dict[str, Any]]  # (index, messageId) -> vendor-shaped payload
    ident: Callable[[dict[str, Any]], str]         # an accepted event -> the messageId it carries

    def accepted_ids(self) -> list[str]:
        return [self.ident(e) for e in list(self.stand_in.accepted)]


def case(kind: str) -> VendorCase:
    """A started stand-in for `kind` and everything a test needs to send it events. The stand-ins listen on
    plain http on loopback: every connection opts in (`allow_http`, `allow_private`; the test run lists
    loopback in EVENTROUTER_PRIVATE_NETWORKS, tests/conftest.py)."""
    made = _case(kind)
    if "allow_private" in made.connection:
        return made
    return replace(made, connection={**made.connection, "allow_http": True, "allow_private": True},
                   connection_yaml=made.connection_yaml.removesuffix("}") + ", allow_http: true, allow_private: true}")


def _case(kind: str) -> VendorCase:
    now_s = int(time.time())
    if kind == "ga4":
        s: StandIn = GA4StandIn().start()
        return VendorCase(kind, s, {"measurement_id": "G-TEST", "api_secret": SECRETS[kind],
                                    "endpoint": f"{s.url}/mp/collect"},
                          f'{{measurement_id: G-TEST, api_secret: "${{SECRET}}", endpoint: "{s.url}/mp/collect"}}',
                          lambda i, m: {"client_id": f"c{i % 7}", "name": "purchase", "timestamp_micros": now_s * 10**6,
                                        "params": {"message_id": m, "value": i}},
                          lambda e: e["params"]["message_id"])
    if kind == "meta_capi":
        s = MetaStandIn().start()
        return VendorCase(kind, s, {"pixel_id": "1234567890", "access_token": SECRETS[kind], "endpoint": s.url},
                          f'{{pixel_id: "1234567890", access_token: "${{SECRET}}", endpoint: "{s.url}"}}',
                          lambda i, m: {"event_name": "Purchase", "event_time": now_s, "event_id": m,
                                        "action_source": "website", "user_data": {"external_id": ["ab" * 32]}},
                          lambda e: e["event_id"])
    if kind == "amplitude":
        s = AmplitudeStandIn().start()
        return VendorCase(kind, s, {"api_key": SECRETS[kind], "endpoint": f"{s.url}/2/httpapi"},
                          f'{{api_key: "${{SECRET}}", endpoint: "{s.url}/2/httpapi"}}',
                          lambda i, m: {"event_type": "Purchase", "user_id": f"user-{i % 7:03d}", "insert_id": m,
                                        "time": now_s * 1000},
                          lambda e: e["insert_id"])
    if kind == "mixpanel":
        s = MixpanelStandIn().start()
        return VendorCase(kind, s, {"project_id": "42", "username": "sa.user", "secret": SECRETS[kind],
                                    "endpoint": f"{s.url}/import"},
                          f'{{project_id: "42", username: sa.user, secret: "${{SECRET}}", endpoint: "{s.url}/import"}}',
                          lambda i, m: {"event": "Purchase", "properties": {
                              "time": now_s * 1000, "distinct_id": f"u{i % 7}", "$insert_id": m}},
                          lambda e: e["properties"]["$insert_id"])
    if kind == "braze":
        s = BrazeStandIn().start()
        return VendorCase(kind, s, {"api_key": SECRETS[kind], "endpoint": f"{s.url}/users/track"},
                          f'{{api_key: "${{SECRET}}", endpoint: "{s.url}/users/track"}}',
                          lambda i, m: {"object": "events", "external_id": f"u{i % 7}", "name": "Purchase",
                                        "time": "2026-11-26T10:00:00Z", "properties": {"message_id": m}},
                          lambda e: e["properties"]["message_id"])
    if kind == "posthog":
        s = PostHogStandIn().start()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_s))
        return VendorCase(kind, s, {"api_key": SECRETS[kind], "endpoint": f"{s.url}/batch/"},
                          f'{{api_key: "${{SECRET}}", endpoint: "{s.url}/batch/"}}',
                          lambda i, m: {"event": "Purchase", "distinct_id": f"u{i % 7}", "uuid": m, "timestamp": stamp,
                                        "properties": {"message_id": m}},
                          lambda e: e["properties"]["message_id"])
    s = WebhookStandIn().start()
    return VendorCase(kind, s, {"url": f"{s.url}/hook", "secret": SECRETS[kind], "allow_http": True,
                                "allow_private": True},
                      f'{{url: "{s.url}/hook", secret: "${{SECRET}}", allow_http: true, allow_private: true}}',
                      lambda i, m: {"messageId": m, "type": "track", "event": "Purchase"},
                      lambda e: e["messageId"])
