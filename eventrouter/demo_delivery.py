"""The main job's delivery stage: a stand-in for each vendor (local HTTP servers that enforce the
vendor's contract), the demo config pointed at them, one `eventrouter forward` process per
integration, and a report of what each vendor got: delivered, dead-lettered (by reason), still on the
way. Secrets are demo values passed to the processes as environment variables, as in production."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from forwarders.standins import (
    AmplitudeStandIn,
    BrazeStandIn,
    GA4StandIn,
    MetaStandIn,
    MixpanelStandIn,
    StandIn,
    WebhookStandIn,
)
from schemas import Topics

SECRETS = {"GA4_API_SECRET": "ga4-secret", "META_ACCESS_TOKEN": "meta-token", "AMPLITUDE_API_KEY": "amp-key",
           "MIXPANEL_SECRET": "mp-secret", "BRAZE_API_KEY": "braze-key", "WEBHOOK_SECRET": "hook-secret"}

CONFIG = """
# the demo's config: one pipeline, every starter kit, each vendor's endpoint a local stand-in
pipelines:
  - {{name: demo, write_keys: [wk_demo], integrations: [ga4, meta, amplitude, mixpanel, braze, webhook]}}
integrations:
  - {{name: ga4, kind: ga4, consent: analytics, playbook: "starter:ga4",
     connection: {{measurement_id: G-TEST, api_secret: "${{GA4_API_SECRET}}", endpoint: "{ga4}/mp/collect"}}}}
  - {{name: meta, kind: meta_capi, consent: advertising, playbook: "starter:meta_capi",
     connection: {{pixel_id: "1234567890", access_token: "${{META_ACCESS_TOKEN}}", endpoint: "{meta}"}}}}
  - {{name: amplitude, kind: amplitude, playbook: "starter:amplitude",
     connection: {{api_key: "${{AMPLITUDE_API_KEY}}", endpoint: "{amplitude}/2/httpapi"}}}}
  - {{name: mixpanel, kind: mixpanel, playbook: "starter:mixpanel",
     connection: {{project_id: "42", username: sa.user, secret: "${{MIXPANEL_SECRET}}",
                   endpoint: "{mixpanel}/import"}}}}
  - {{name: braze, kind: braze, playbook: "starter:braze",
     connection: {{api_key: "${{BRAZE_API_KEY}}", endpoint: "{braze}/users/track"}}}}
  - {{name: webhook, kind: webhook, playbook: "starter:webhook",
     connection: {{url: "{webhook}/hook", secret: "${{WEBHOOK_SECRET}}", allow_http: true, allow_private: true}}}}
"""


class DemoVendors:
    """The six stand-ins, by integration name."""

    def __init__(self) -> None:
        self.by_name: dict[str, StandIn] = {
            "ga4": GA4StandIn(), "meta": MetaStandIn(), "amplitude": AmplitudeStandIn(),
            "mixpanel": MixpanelStandIn(), "braze": BrazeStandIn(), "webhook": WebhookStandIn()}

    def start(self) -> DemoVendors:
        for stand_in in self.by_name.values():
            stand_in.start()
        return self

    def config(self) -> str:
        return CONFIG.format(**{name: s.url for name, s in self.by_name.items()})

    def stop(self) -> None:
        for stand_in in self.by_name.values():
            stand_in.stop()


class DemoForwarders:
    """`eventrouter forward NAME` for each integration, as processes; stopped by PID."""

    def __init__(self, bootstrap: str, topics: Topics, config: Path, names: list[str], folder: Path) -> None:
        import socket

        self.processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
        self._logs = []
        for name in names:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            log = open(folder / f"forward-{name}.log", "wb")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            process = subprocess.Popen(
                [sys.executable, "-m", "eventrouter", "forward", name, "--bootstrap-servers", bootstrap,
                 "--topic-prefix", topics.prefix, "--config", str(config), "--metrics-port", str(port),
                 "--partitions", "3"], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **SECRETS})
            self.processes[name] = (process, port)
        print(f"forwarders: {', '.join(f'{n} (pid {p.pid})' for n, (p, _) in self.processes.items())}", flush=True)

    def counts(self, name: str) -> tuple[float, dict[str, float], float]:
        """(delivered, dead-lettered by reason, moved to the retry topic) from the forwarder's metrics."""
        from streams.metrics import scrape

        metrics = scrape(self.processes[name][1])
        delivered = sum(v for k, v in metrics.items() if k.startswith("eventrouter_forwarder_delivered_total"))
        retried = sum(v for k, v in metrics.items() if k.startswith("eventrouter_forwarder_retried_total"))
        dead: dict[str, float] = {}
        for key, value in metrics.items():
            if key.startswith("eventrouter_forwarder_dead_lettered_total"):
                reason = dict(re.findall(r'(\w+)="([^"]*)"', key)).get("reason", "?")
                dead[reason] = dead.get(reason, 0) + value
        return delivered, dead, retried

    def stop(self) -> None:
        for process, _port in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _port in self.processes.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in self._logs:
            log.close()


def report(forwarders: DemoForwarders, vendors: DemoVendors, routed: dict[str, float], timeout: float = 120) -> bool:
    """Wait until every routed event is delivered or dead-lettered; print per integration; True if all are."""
    deadline = time.monotonic() + timeout
    done: dict[str, Any] = {}
    while time.monotonic() < deadline:
        done = {name: forwarders.counts(name) for name in routed}
        if all(d + sum(dead.values()) >= routed[name] for name, (d, dead, _r) in done.items()):
            break
        time.sleep(0.25)
    balanced = True
    for name, (delivered, dead, retried) in sorted(done.items()):
        stand_in = vendors.by_name[name]
        accounted = delivered + sum(dead.values()) == routed[name]
        balanced = balanced and accounted
        reasons = ", ".join(f"{r}={n:.0f}" for r, n in sorted(dead.items())) or "-"
        print(f"  {name:<10} routed {routed[name]:>4.0f}  delivered {delivered:>4.0f} "
              f"(the vendor holds {len(stand_in.accepted)} in {stand_in.requests} requests)  "
              f"dead-lettered {sum(dead.values()):.0f} ({reasons})  retried {retried:.0f}")
    print(f"delivery: every routed event delivered or dead-lettered: {'yes' if balanced else 'NO'}")
    return balanced
