"""Helpers for integration tests: fresh topic layouts and reading a topic back."""

from __future__ import annotations

import time
import uuid
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from schemas import Topics
from schemas.runtime.kafka import consumer_settings, ensure_topics


def fresh_topics(bootstrap: str, partitions: int = 3) -> Topics:
    """A topic layout of its own (raw and invalid created), so tests never see each other's events."""
    topics = Topics(f"t{uuid.uuid4().hex[:10]}")
    ensure_topics(bootstrap, [topics.raw, topics.invalid], partitions=partitions)
    return topics


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0, settle: float = 0.0) -> list[Message]:
    """Read `topic` from the start until `expected` records arrived (then `settle` more seconds) or timeout."""
    # Partitions are assigned, not subscribed: no group coordinator, which can take minutes to load
    # after a broker crash, and nothing to commit.
    consumer = Consumer(consumer_settings(bootstrap, f"g-{uuid.uuid4().hex[:8]}", {"enable.auto.commit": False}))
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(m for m in consumer.consume(num_messages=1000, timeout=0.5) if m.error() is None)
        quiet_until = time.monotonic() + settle
        while time.monotonic() < quiet_until:
            out.extend(m for m in consumer.consume(num_messages=1000, timeout=0.2) if m.error() is None)
    finally:
        consumer.close()
    return out


def deep_object(depth: int) -> dict[str, Any]:
    """{"d": {"d": ...}} nested `depth` levels: an event part deeper than any limit allows."""
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(depth):
        node["d"] = {}
        node = node["d"]
    return deep
