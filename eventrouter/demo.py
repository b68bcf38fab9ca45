"""The main job, for now: embedded Kafka up, every Segment call type through Kafka as Avro and back.

Later issues grow this into the whole pipeline (gateway, worker, forwarders, vendor stand-ins).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer

from eventrouter.localkafka import LocalKafka
from schemas import EventCodec, Topics
from schemas.kafka import consumer_settings, ensure_topics, producer_settings

log = logging.getLogger(__name__)


def sample_calls(count: int) -> list[dict[str, Any]]:
    """`count` Segment calls cycling through all six call types."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    base: dict[str, dict[str, Any]] = {
        "track": {"event": "Order Completed", "properties": {"revenue": 42.5, "currency": "EUR", "items": 2}},
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
    topics = Topics("demo")
    ensure_topics(bootstrap, [topics.raw], partitions=3)
    codec = EventCodec()
    calls = sample_calls(count)
    acked: list[str] = []
    failed: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        (failed if err is not None else acked).append(msg.key().decode())

    producer = Producer(producer_settings(bootstrap))
    t0 = time.monotonic()
    for call in calls:
        producer.produce(topics.raw, value=codec.encode(call), key=call["userId"].encode(),
                         headers={"messageId": call["messageId"]}, on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(30)
    produce_s = time.monotonic() - t0
    consumer = Consumer(consumer_settings(bootstrap, f"demo-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topics.raw])
    received: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while len(received) < len(acked) and time.monotonic() < deadline:
        for msg in consumer.consume(num_messages=500, timeout=1.0):
            if msg.error() is None:
                event = codec.decode(msg.value())
                received[event["messageId"]] = event
    consumer.close()
    by_id = {c["messageId"]: c for c in calls}
    identical = sum(1 for mid, ev in received.items() if by_id.get(mid) == ev)
    per_type: dict[str, int] = {}
    for ev in received.values():
        per_type[ev["type"]] = per_type.get(ev["type"], 0) + 1
    print(f"produced {len(calls)} events ({len(acked)} acked, {len(failed)} failed, {remaining} unflushed) "
          f"in {produce_s:.2f}s")
    print("received per call type: " + ", ".join(f"{k}={v}" for k, v in sorted(per_type.items())))
    lost = len(acked) - len(received)
    print(f"summary: sent={len(calls)} acked={len(acked)} received={len(received)} "
          f"identical_after_round_trip={identical} lost={lost}")
    return 0 if lost == 0 and identical == len(calls) and not failed else 1
