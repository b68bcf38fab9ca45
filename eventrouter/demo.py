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
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from eventrouter.dev.localkafka import LocalKafka
from schemas import EventCodec, Topics
from schemas.catalogue import KINDS
from schemas.native import compiled_current
from schemas.runtime.kafka import consumer_settings, ensure_topics

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
    # an order carries what the conversion APIs match on: the buyer's email and phone (hashed by their starter
    # kits), the browser, and the click ids a landing page would have kept (docs/vendors/)
    clicks = {"userAgent": "Mozilla/5.0 (X11; Linux x86_64)", "fbc": "fb.1.1764151200000.IwAR2demo", "fbp":
              "fb.1.1764151100000.1098115397", "gclid": "Cj0KCQiAdemo", "ttclid": "E.C.P.demo", "ttp": "2C3lDgdemo",
              "ScCid": "6a4a8b1b-2f4d-4fd8-9a51-7a1c1fa3a2de", "epik": "dj0yJnU9demo",
              "rdt_cid": "9051781416453418813_1764151200", "li_fat_id": "f7d6b4c8-9e2a-4c1b-a8f3-2d5e6f7a8b9c",
              "page": {"url": "https://shop.example/checkout"},
              "traits": {"email": "ada@example.com", "phone": "+33 6 12 34 56 78"}}
    calls = []
    for i in range(count):
        call_type = list(base)[i % len(base)]
        context = {"library": {"name": "eventrouter-demo", "version": "0.1.0"}, "ip": "203.0.113.7",
                   **(clicks if call_type == "track" else {})}
        calls.append({
            "messageId": str(uuid.uuid4()), "type": call_type, "userId": f"user-{i % 50}",
            "originalTimestamp": now, "sentAt": now, "writeKey": "wk_demo", "context": context,
            **base[call_type],
        })
    return calls


def run_demo(state_dir: Path, cache_dir: Path, *, count: int = 600, keep: bool = False,
             keep_running: bool = False, engine: str = "kafka", kinds: Sequence[str] = KINDS) -> int:
    """Start a broker, round-trip `count` events, print a summary. Returns a process exit code."""
    shutil.rmtree(state_dir, ignore_errors=True)
    kafka = LocalKafka(state_dir, cache_dir)
    started = time.monotonic()
    print("starting the embedded Kafka broker (the first run fetches its jars with Maven)...", flush=True)
    status = kafka.start()
    assert status.bootstrap is not None
    print(f"kafka {status.kafka_version} up at {status.bootstrap} in {time.monotonic() - started:.1f}s", flush=True)
    print(f"hot path: {'compiled (mypyc)' if compiled_current() else 'plain Python'}", flush=True)
    try:
        return _round_trip(status.bootstrap, count, keep_running, engine, kinds)
    finally:
        if keep:
            print(f"broker left running (state in {state_dir}); "
                  f"stop it with: eventrouter kafka stop --state-dir {state_dir}")
        else:
            # the run is over: what the SDK's and the import's closed clients say about the broker going away
            # until the interpreter exits is noise, not news
            logging.getLogger("producers.publisher").setLevel(logging.CRITICAL)
            logging.getLogger("schemas.runtime.kafka_watch").setLevel(logging.CRITICAL)
            kafka.stop()
            print("broker stopped")


def _round_trip(bootstrap: str, count: int, keep_running: bool, engine: str, kinds: Sequence[str]) -> int:
    """The stack up (stand-ins, worker, forwarders, gateway); events in through all three doors (SDK,
    HTTP gateway, file import); every one accounted for at each stage."""
    import secrets
    import tempfile

    from eventrouter.console.auth import ADMIN
    from eventrouter.console.users import add_user
    from eventrouter.demo_delivery import FORWARDER_PROCESSES, PRIVATE_NETWORKS, DemoVendors
    from eventrouter.stack import Stack
    from eventrouter.supervise import run_up
    from schemas.runtime.revisions import ConfigStore

    topics = Topics("demo")
    ensure_topics(bootstrap, [topics.raw, topics.invalid], partitions=3)
    vendors = DemoVendors(kinds).start()
    folder = Path(tempfile.mkdtemp(prefix="eventrouter-demo-"))
    config = folder / "eventrouter.yaml"
    config.write_text(vendors.config())
    revision, _ = ConfigStore(bootstrap, topics).apply(config)
    processes = min(FORWARDER_PROCESSES, len(kinds))
    print(f"config: revision {revision.number} ({len(kinds)} integrations, one per vendor stand-in, delivered by "
          f"{processes} forwarder processes); logs in {folder}")
    users, password = folder / "console-users.json", secrets.token_urlsafe(12)
    add_user(users, "demo", ADMIN, password)
    stack = Stack(bootstrap, topics, config, folder, env={**vendors.secrets, **PRIVATE_NETWORKS}, console_port=0,
                  console_users=users, engine=engine, forwarder_processes=processes).start()
    print("\n".join(stack.describe()), flush=True)
    print(f"console login: demo / {password} (admin; made for this run)", flush=True)
    print(f"gateway writeKey: wk_demo (the demo config's pipeline); try:\n  curl -u wk_demo: "
          f"http://127.0.0.1:{stack.gateway_port}/v1/track -H 'Content-Type: application/json' "
          """-d '{"userId": "u1", "event": "Signed Up"}'""", flush=True)
    try:
        code = _send_route_deliver(bootstrap, topics, count, stack=stack, vendors=vendors)
        if keep_running:
            print("keeping everything running: send events to the gateway, try `eventrouter status "
                  f"--bootstrap-servers {bootstrap} --topic-prefix {topics.prefix} --logs {folder}`; Ctrl-C stops",
                  flush=True)
            code = max(code, run_up(stack, start=False))
        return code
    finally:
        stack.stop()
        vendors.stop()


def _send_route_deliver(bootstrap: str, topics: Topics, count: int, *, stack: Any, vendors: Any) -> int:
    from eventrouter.demo_delivery import account
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
    print(f"  progress: {stack.progress().line()}", flush=True)

    gateway_calls = calls[third:2 * third]
    accepted, rejected = _through_gateway(stack.gateway_port, gateway_calls)
    sent.update({c["messageId"]: c for c in gateway_calls})
    print(f"gateway: {len(gateway_calls)} events + 2 invalid in batches of 50: accepted {accepted}, "
          f"rejected {rejected} (answered with reasons)", flush=True)
    print(f"  progress: {stack.progress().line()}", flush=True)

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
    accounted = account(stack, vendors, len(received))
    return 0 if lost == 0 and rejected == 2 and accounted else 1


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


def _through_gateway(port: int | None, calls: list[dict[str, Any]]) -> tuple[int, int]:
    """Post the calls to the stack's gateway as a Segment library would: batches of 50, Basic auth."""
    import requests

    url = f"http://127.0.0.1:{port}"
    accepted = rejected = 0
    for _ in range(300):
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    batches = [calls[i:i + 50] for i in range(0, len(calls), 50)]
    batches[-1] = [*batches[-1], {"type": "track", "userId": "u"}, {"type": "identify"}]  # two invalid events
    for batch in batches:
        for attempt in range(50):  # the gateway learns the writeKey from the config topic at start
            reply = requests.post(f"{url}/v1/batch", json={"batch": batch}, auth=("wk_demo", ""), timeout=30)
            if reply.status_code != 401 or attempt == 49:
                break
            time.sleep(0.2)
        reply.raise_for_status()
        accepted += reply.json()["accepted"]
        rejected += len(reply.json()["rejected"])
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
