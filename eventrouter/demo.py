"""The main job: embedded Kafka up; a stand-in for each vendor; a stream worker and a forwarder per
integration; events of every call type in through the SDK, the HTTP gateway and a file import; read
back from the raw topic, routed by the worker, delivered by the forwarders; every event accounted for
at each stage.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from eventrouter.localkafka import LocalKafka
from schemas import EventCodec, Topics
from schemas.kafka import consumer_settings, ensure_topics

log = logging.getLogger(__name__)


def sample_calls(count: int) -> list[dict[str, Any]]:
    """`count` Segment calls cycling through all six call types."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    base: dict[str, dict[str, Any]] = {
        "track": {"event": "Order Completed", "properties": {
            "order_id": "o-1", "revenue": 42.5, "currency": "EUR",
            "products": [{"product_id": "p-1", "name": "Mug", "price": 21.25, "quantity": 2}]}},
        "identify": {"traits": {"email": "ada@example.com", "plan": "pro", "logins": 7}},
        "page": {"name": "Checkout", "category": "Shop", "properties": {"url": "https://shop.example/checkout"}},
        "screen": {"name": "Cart", "properties": {"items": 2}},
        "group": {"groupId": "acme", "traits": {"employees": 120}},
        "alias": {"previousId": "anon-previous"},
    }
    calls = []
    for i in range(count):
        call_type = list(base)[i % len(base)]
        calls.append({
            "messageId": str(uuid.uuid4()), "type": call_type, "userId": f"user-{i % 50}",
            "originalTimestamp": now, "sentAt": now, "writeKey": "wk_demo",
            "context": {"library": {"name": "eventrouter-demo", "version": "0.1.0"}, "ip": "203.0.113.7"},
            **base[call_type],
        })
    return calls


def run_demo(state_dir: Path, cache_dir: Path, count: int = 600, keep: bool = False) -> int:
    """Start a broker, round-trip `count` events, print a summary. Returns a process exit code."""
    shutil.rmtree(state_dir, ignore_errors=True)
    kafka = LocalKafka(state_dir, cache_dir)
    started = time.monotonic()
    print("starting the embedded Kafka broker (the first run fetches its jars with Maven)...", flush=True)
    status = kafka.start()
    assert status.bootstrap is not None
    print(f"kafka {status.kafka_version} up at {status.bootstrap} in {time.monotonic() - started:.1f}s", flush=True)
    try:
        return _round_trip(status.bootstrap, count)
    finally:
        if keep:
            print(f"broker left running (state in {state_dir}); "
                  f"stop it with: eventrouter kafka stop --state-dir {state_dir}")
        else:
            kafka.stop()
            print("broker stopped")


def _round_trip(bootstrap: str, count: int) -> int:
    """Events in through all three doors (SDK, HTTP gateway, file import), read back from the raw topic."""
    from eventrouter.demo_delivery import DemoForwarders, DemoVendors

    topics = Topics("demo")
    ensure_topics(bootstrap, [topics.raw, topics.invalid], partitions=3)
    vendors = DemoVendors().start()
    worker = _DemoWorker(bootstrap, topics, vendors.config())
    names = ["ga4", "meta", "amplitude", "mixpanel", "braze", "webhook"]
    forwarders = DemoForwarders(bootstrap, topics, worker.config, names, worker.folder)
    try:
        return _send_route_deliver(bootstrap, topics, count, worker=worker, forwarders=forwarders, vendors=vendors)
    finally:
        forwarders.stop()
        worker.stop()
        vendors.stop()


def _send_route_deliver(bootstrap: str, topics: Topics, count: int, *, worker: _DemoWorker, forwarders: Any,
                        vendors: Any) -> int:
    from eventrouter.demo_delivery import report
    from producers import Analytics

    calls = sample_calls(count)
    third = count // 3
    sent: dict[str, dict[str, Any]] = {}

    t0 = time.monotonic()
    with Analytics("wk_demo", bootstrap, topic=topics.raw) as analytics:
        for call in calls[:third]:
            sent[call["messageId"]] = _sdk_call(analytics, call)
        sdk_pending = analytics.flush(30)
        sdk_stats = analytics.stats()
    print(f"SDK: {third} calls, acked {sdk_stats['acked']}, failed {sdk_stats['failed']}, "
          f"pending {sdk_pending} ({time.monotonic() - t0:.2f}s)", flush=True)

    gateway_calls = calls[third:2 * third]
    accepted, rejected = _through_gateway(bootstrap, topics, gateway_calls)
    sent.update({c["messageId"]: c for c in gateway_calls})
    print(f"gateway: {len(gateway_calls)} events + 2 invalid in batches of 50: accepted {accepted}, "
          f"rejected {rejected} (to {topics.invalid}, with reasons)", flush=True)

    import_calls = calls[2 * third:]
    published = _through_import(bootstrap, topics, import_calls)
    sent.update({c["messageId"]: c for c in import_calls})
    print(f"import: {len(import_calls)} lines, published {published}", flush=True)

    received = _read_back(bootstrap, topics.raw, len(sent))
    per_type: dict[str, int] = {}
    for event in received.values():
        per_type[event["type"]] = per_type.get(event["type"], 0) + 1
    print("received per call type: " + ", ".join(f"{k}={v}" for k, v in sorted(per_type.items())))
    lost = len(set(sent) - set(received))
    print(f"summary: sent={len(sent)} received={len(received)} invalid_reported={rejected} lost={lost}")
    routed_ok, routed = _route(worker, len(received))
    delivered_ok = report(forwarders, vendors, routed)
    return 0 if lost == 0 and rejected == 2 and routed_ok and delivered_ok else 1


def _sdk_call(analytics: Any, call: dict[str, Any]) -> dict[str, Any]:
    kind = call["type"]
    common = {"context": call["context"], "message_id": call["messageId"]}
    if kind == "track":
        _ok, message = analytics.track(call["userId"], call["event"], call["properties"], **common)
    elif kind == "identify":
        _ok, message = analytics.identify(call["userId"], call["traits"], **common)
    elif kind in ("page", "screen"):
        _ok, message = getattr(analytics, kind)(call["userId"], call.get("category"), call["name"],
                                               call["properties"], **common)
    elif kind == "group":
        _ok, message = analytics.group(call["userId"], call["groupId"], call["traits"], **common)
    else:
        _ok, message = analytics.alias(call["previousId"], call["userId"], **common)
    return dict(message)


def _through_gateway(bootstrap: str, topics: Topics, calls: list[dict[str, Any]]) -> tuple[int, int]:
    import os
    import signal
    import socket
    import subprocess
    import sys

    import requests

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = subprocess.Popen([sys.executable, "-m", "eventrouter", "gateway", "--bootstrap-servers", bootstrap,
                                "--topic-prefix", topics.prefix, "--write-key", "wk_demo", "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    accepted = rejected = 0
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/health", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        batches = [calls[i:i + 50] for i in range(0, len(calls), 50)]
        batches[-1] = [*batches[-1], {"type": "track", "userId": "u"}, {"type": "identify"}]  # two invalid events
        for batch in batches:
            reply = requests.post(f"{url}/v1/batch", json={"batch": batch}, auth=("wk_demo", ""), timeout=30)
            reply.raise_for_status()
            accepted += reply.json()["accepted"]
            rejected += len(reply.json()["rejected"])
    finally:
        os.kill(gateway.pid, signal.SIGTERM)
        gateway.wait(30)
    return accepted, rejected


def _through_import(bootstrap: str, topics: Topics, calls: list[dict[str, Any]]) -> int:
    import gzip
    import tempfile

    import orjson

    from producers.importer import Importer
    from producers.publisher import Publisher

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "export.jsonl.gz"
        with gzip.open(export, "wb") as out:
            out.writelines(orjson.dumps(call) + b"\n" for call in calls)
        publisher = Publisher(bootstrap, topics.raw, name="eventrouter-demo-import")
        importer = Importer(publisher, write_key="wk_demo", rejects=Path(tmp) / "rejects.jsonl",
                            checkpoint=Path(tmp) / "checkpoint.json", progress=None)
        summary = importer.run([export])
        publisher.close()
    return summary.published


def _read_back(bootstrap: str, topic: str, expected: int) -> dict[str, dict[str, Any]]:
    codec = EventCodec()
    consumer = Consumer(consumer_settings(bootstrap, f"demo-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic])
    received: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while len(received) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=1.0):
            if msg.error() is None:
                event = codec.decode(msg.value())
                received[event["messageId"]] = event
    consumer.close()
    return received


class _DemoWorker:
    """`eventrouter worker` as a subprocess, with the demo config applied as revision 1."""

    def __init__(self, bootstrap: str, topics: Topics, config_text: str) -> None:
        import socket
        import subprocess
        import sys
        import tempfile

        self.folder = Path(tempfile.mkdtemp(prefix="eventrouter-demo-worker-"))
        self.config = config = self.folder / "eventrouter.yaml"
        config.write_text(config_text)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._log = open(self.folder / "worker.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "eventrouter", "worker", "--bootstrap-servers", bootstrap, "--topic-prefix",
             topics.prefix, "--config", str(config), "--metrics-port", str(self.port), "--data-dir",
             str(self.folder / "data"), "--partitions", "3"], stdout=self._log, stderr=subprocess.STDOUT)
        print(f"stream worker: pid {self.process.pid}, metrics on http://127.0.0.1:{self.port}/metrics", flush=True)

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples, `name{labels}` -> value; {} while the endpoint is not up."""
        from streams.metrics import scrape

        return scrape(self.port)

    def stop(self) -> None:
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
        self._log.close()


def _route(worker: _DemoWorker, expected: int) -> tuple[bool, dict[str, float]]:
    """Wait until the worker has read every raw event; print what each integration got and check that
    every event is accounted for per integration: routed + filtered (by rule) + dead-lettered."""
    import re

    deadline = time.monotonic() + 120
    metrics: dict[str, float] = {}
    while time.monotonic() < deadline:
        metrics = worker.metrics()
        if sum(v for k, v in metrics.items() if k.startswith("eventrouter_worker_events_in_total")) >= expected:
            break
        if worker.process.poll() is not None:
            print(f"the worker exited; its log: {worker.folder / 'worker.log'}")
            return False, {}
        time.sleep(0.25)
    time.sleep(0.5)
    metrics = worker.metrics()
    label = re.compile(r'(\w+)="([^"]*)"')
    per: dict[str, dict[str, Any]] = {}
    read = deduplicated = 0.0
    for key, value in metrics.items():
        name = key.split("{")[0]
        labels = dict(label.findall(key))
        if name == "eventrouter_worker_events_in_total":
            read += value
        elif name == "eventrouter_worker_deduplicated_total":
            deduplicated += value
        elif name in ("eventrouter_worker_events_out_total", "eventrouter_worker_filtered_total",
                      "eventrouter_worker_invalid_total") and labels.get("integration", "-") != "-":
            row = per.setdefault(labels["integration"], {"routed": 0.0, "filtered": {}, "dead_lettered": 0.0})
            if name.endswith("out_total"):
                row["routed"] += value
            elif name.endswith("filtered_total"):
                row["filtered"][labels["rule"]] = row["filtered"].get(labels["rule"], 0) + value
            else:
                row["dead_lettered"] += value
    invalid = sum(v for k, v in metrics.items()
                  if k.startswith("eventrouter_worker_invalid_total") and 'integration="-"' in k)
    routable = read - invalid - deduplicated
    print(f"worker: read {read:.0f}, invalid {invalid:.0f}, deduplicated {deduplicated:.0f}, "
          f"config revision {metrics.get('eventrouter_worker_config_revision', 0):.0f}")
    balanced = read >= expected
    for name, row in sorted(per.items()):
        filtered = sum(row["filtered"].values())
        total = row["routed"] + filtered + row["dead_lettered"]
        balanced = balanced and total == routable
        rules = ", ".join(f"{rule}={n:.0f}" for rule, n in sorted(row["filtered"].items())) or "-"
        print(f"  {name:<10} routed {row['routed']:>4.0f}  filtered {filtered:>4.0f} ({rules})  "
              f"dead-lettered {row['dead_lettered']:.0f}")
    print(f"routing: every event accounted for per integration: {'yes' if balanced else 'NO'}")
    return balanced, {name: row["routed"] for name, row in per.items()}
