"""The main job's vendors and its account: a stand-in for each vendor (local HTTP servers that enforce
the vendor's contract), the demo config pointed at them, and, once the events are in, each
integration's account from the stack's metrics (routed, filtered, playbook errors, delivered,
dead-lettered by reason) beside what each vendor holds. Secrets are the stand-ins' values, passed to
the processes as environment variables, as in production."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from eventrouter.dev.standins import STAND_INS, StandIn
from schemas.catalogue import KINDS, destination

# The stand-ins listen on loopback: the demo's forwarders may reach it (the operator's list, which each
# connection's `allow_private` also needs; forwarders/ssrf.py). A real deployment leaves it empty.
PRIVATE_NETWORKS = {"EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8,::1/128"}
FORWARDER_PROCESSES = 4  # the integrations are packed into this many forwarder processes (eventrouter/packs.py)


def secret_variable(kind: str) -> str:
    """The environment variable the demo passes a vendor's secret in, as production would."""
    return f"DEMO_{kind.upper()}_SECRET"


class DemoVendors:
    """A stand-in for each vendor of the catalogue (or those asked for); its integration is named as its kind."""

    def __init__(self, kinds: Sequence[str] = KINDS) -> None:
        self.by_name: dict[str, StandIn] = {kind: STAND_INS[kind]() for kind in kinds}

    def start(self) -> DemoVendors:
        for stand_in in self.by_name.values():
            stand_in.start()
        return self

    @property
    def secrets(self) -> dict[str, str]:
        """The vendors' secrets, by the environment variable each connection refers to."""
        return {secret_variable(kind): s.credential for kind, s in self.by_name.items()}

    def config(self) -> str:
        """The demo's config: one pipeline to every integration, each vendor's endpoint its stand-in."""
        lines = ["# the demo's config: one pipeline, a starter kit per vendor, each endpoint a local stand-in",
                 "pipelines:", f"  - {{name: demo, write_keys: [wk_demo], integrations: [{', '.join(self.by_name)}]}}",
                 "integrations:"]
        for kind, stand_in in self.by_name.items():
            connection = json.dumps(stand_in.connection(f"${{{secret_variable(kind)}}}"))
            category = destination(kind).category  # the consent an event's context may withhold from it
            consent = f", consent: {category}" if category in ("advertising", "analytics") else ""
            lines.append(f'  - {{name: {kind}, kind: {kind}, playbook: "starter:{kind}"{consent},\n'
                         f"     connection: {connection}}}")
        return "\n".join(lines) + "\n"

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
