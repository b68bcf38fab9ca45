"""The main job's vendors and its account: a stand-in for each vendor (local HTTP servers that enforce
the vendor's contract), the demo config pointed at them, and, once the events are in, each
integration's account from the stack's metrics (routed, filtered, playbook errors, delivered,
dead-lettered by reason) beside what each vendor holds. Secrets are demo values passed to the
processes as environment variables, as in production."""

from __future__ import annotations

import time
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

SECRETS = {"GA4_API_SECRET": "ga4-secret", "META_ACCESS_TOKEN": "meta-token", "AMPLITUDE_API_KEY": "amp-key",
           "MIXPANEL_SECRET": "mp-secret", "BRAZE_API_KEY": "braze-key", "POSTHOG_API_KEY": "phc_demo_key",
           "WEBHOOK_SECRET": "hook-secret"}
# The stand-ins listen on loopback: the demo's forwarders may reach it (the operator's list, which each
# connection's `allow_private` also needs; forwarders/ssrf.py). A real deployment leaves it empty.
PRIVATE_NETWORKS = {"EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128"}

CONFIG = """
# the demo's config: one pipeline, every starter kit, each vendor's endpoint a local stand-in
pipelines:
  - {{name: demo, write_keys: [wk_demo], integrations: [ga4, meta, amplitude, mixpanel, braze, posthog, webhook]}}
integrations:
  - {{name: ga4, kind: ga4, consent: analytics, playbook: "starter:ga4",
     connection: {{measurement_id: G-TEST, api_secret: "${{GA4_API_SECRET}}", endpoint: "{ga4}/mp/collect",
                   allow_http: true, allow_private: true}}}}
  - {{name: meta, kind: meta_capi, consent: advertising, playbook: "starter:meta_capi",
     connection: {{pixel_id: "1234567890", access_token: "${{META_ACCESS_TOKEN}}", endpoint: "{meta}",
                   allow_http: true, allow_private: true}}}}
  - {{name: amplitude, kind: amplitude, playbook: "starter:amplitude",
     connection: {{api_key: "${{AMPLITUDE_API_KEY}}", endpoint: "{amplitude}/2/httpapi",
                   allow_http: true, allow_private: true}}}}
  - {{name: mixpanel, kind: mixpanel, playbook: "starter:mixpanel",
     connection: {{project_id: "42", username: sa.user, secret: "${{MIXPANEL_SECRET}}",
                   endpoint: "{mixpanel}/import", allow_http: true, allow_private: true}}}}
  - {{name: braze, kind: braze, playbook: "starter:braze",
     connection: {{api_key: "${{BRAZE_API_KEY}}", endpoint: "{braze}/users/track",
                   allow_http: true, allow_private: true}}}}
  - {{name: posthog, kind: posthog, playbook: "starter:posthog",
     connection: {{api_key: "${{POSTHOG_API_KEY}}", endpoint: "{posthog}/batch/",
                   allow_http: true, allow_private: true}}}}
  - {{name: webhook, kind: webhook, playbook: "starter:webhook",
     connection: {{url: "{webhook}/hook", secret: "${{WEBHOOK_SECRET}}", allow_http: true, allow_private: true}}}}
"""


class DemoVendors:
    """The stand-ins, by integration name."""

    def __init__(self) -> None:
        self.by_name: dict[str, StandIn] = {
            "ga4": GA4StandIn(), "meta": MetaStandIn(), "amplitude": AmplitudeStandIn(),
            "mixpanel": MixpanelStandIn(), "braze": BrazeStandIn(),
            "posthog": PostHogStandIn(api_key=SECRETS["POSTHOG_API_KEY"]),
            "webhook": WebhookStandIn()}

    def start(self) -> DemoVendors:
        for stand_in in self.by_name.values():
            stand_in.start()
        return self

    def config(self) -> str:
        return CONFIG.format(**{name: s.url for name, s in self.by_name.items()})

    def stop(self) -> None:
        for stand_in in self.by_name.values():
            stand_in.stop()


def account(stack: Any, vendors: DemoVendors, expected: int, timeout: float = 120) -> bool:
    """Wait (printing progress) until the workers have read `expected` events and every routed event is
    delivered or dead-lettered; print each integration's account; True if every event is accounted for."""
    deadline = time.monotonic() + timeout
    last = 0.0
    progress = stack.progress()
    while time.monotonic() < deadline:
        for line in stack.revive():  # a child that failed (to start) is started again, and said so
            print(f"  {line}", flush=True)
        progress = stack.progress()
        routable = progress.read - progress.invalid - progress.deduplicated
        done = progress.read >= expected and all(
            lane.routed + lane.filtered + lane.failed >= routable and lane.settled >= lane.routed
            for lane in progress.lanes.values())
        if done:
            break
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            print(f"  progress: {progress.line()}", flush=True)
        time.sleep(0.25)
    print(f"  progress: {progress.line()}", flush=True)
    routable = progress.read - progress.invalid - progress.deduplicated
    print(f"worker: read {progress.read:.0f}, invalid {progress.invalid:.0f}, deduplicated "
          f"{progress.deduplicated:.0f}")
    routed_ok = progress.read >= expected
    delivered_ok = True
    for name, lane in sorted(progress.lanes.items()):
        routed_ok = routed_ok and lane.routed + lane.filtered + lane.failed == routable
        delivered_ok = delivered_ok and lane.settled == lane.routed
        stand_in = vendors.by_name[name]
        reasons = ", ".join(f"{r}={n:.0f}" for r, n in sorted(lane.dead.items())) or "-"
        print(f"  {name:<10} routed {lane.routed:>4.0f}  filtered {lane.filtered:>4.0f}  playbook errors "
              f"{lane.failed:.0f}  delivered {lane.delivered:>4.0f} (the vendor holds {len(stand_in.accepted)} in "
              f"{stand_in.requests} requests)  dead-lettered {sum(lane.dead.values()):.0f} ({reasons})")
    if stack.restarts:
        print("started again: " + ", ".join(f"{role} {n}x" for role, n in sorted(stack.restarts.items()))
              + " (see their logs)")
    print(f"routing: every event accounted for per integration: {'yes' if routed_ok else 'NO'}")
    print(f"delivery: every routed event delivered or dead-lettered: {'yes' if delivered_ok else 'NO'}")
    return routed_ok and delivered_ok
