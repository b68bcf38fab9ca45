"""Latency per hop for the whole-chain benchmark (bench/chain.py): when each event's records were written
to Kafka (their CreateTime: the SDK's `produce()` for the raw topic, the worker's for an integration's),
read back after a run, against when the event was due and when it reached the vendor."""

from __future__ import annotations

import time
import uuid

from bench.common import percentile


def ends(bootstrap: str, topics: list[str], partitions: int) -> dict[tuple[str, int], int]:
    """The high watermark of every partition of `topics`, to read a run's records from."""
    from confluent_kafka import Consumer

    from schemas.runtime.kafka import consumer_settings, watermarks

    consumer = Consumer(consumer_settings(bootstrap, f"hops-{uuid.uuid4().hex[:6]}"))
    try:
        return {(t, p): watermarks(consumer, t, p)[1] for t in topics for p in range(partitions)}
    finally:
        consumer.close()


def written(bootstrap: str, starts: dict[tuple[str, int], int]) -> dict[str, dict[str, float]]:
    """Per topic, messageId -> when its record was written (Kafka's CreateTime: the SDK's `produce()` for
    the raw topic, the worker's for an integration's), for records from `starts` to the current end."""
    from confluent_kafka import Consumer, TopicPartition

    from schemas import EventCodec, outbound_codec
    from schemas.runtime.kafka import consumer_settings

    last = ends(bootstrap, sorted({t for t, _ in starts}), 1 + max(p for _, p in starts))
    decoders = {t: (EventCodec() if t.endswith(".raw") else outbound_codec(fields=("messageId",))) for t, _ in starts}
    consumer = Consumer(consumer_settings(bootstrap, f"hops-{uuid.uuid4().hex[:6]}", {"enable.auto.commit": False}))
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in starts.items() if last[(t, p)] > o])
    todo = sum(last[k] - o for k, o in starts.items())
    out: dict[str, dict[str, float]] = {t: {} for t, _ in starts}
    deadline = time.time() + 120
    while todo > 0 and time.time() < deadline:
        for m in consumer.consume(num_messages=10_000, timeout=1.0):
            if m.error() is None:
                todo, name = todo - 1, str(m.topic())
                out[name][decoders[name].decode(m.value())["messageId"]] = m.timestamp()[1] / 1000
    consumer.close()
    return out


def hops(scheduled: dict[str, float], written_at: dict[str, dict[str, float]], arrived: dict[str, float],
          raw: str, out: str) -> dict[str, str]:
    """p50/p99 of each hop for one vendor: the SDK's own lateness, SDK -> worker output, worker -> vendor."""
    spans: dict[str, list[float]] = {"sdk (scheduled -> produce)": [], "raw -> worker output": [],
                                     "worker output -> vendor": []}
    for key, due in scheduled.items():
        sent, routed, got = written_at[raw].get(key), written_at[out].get(key), arrived.get(key)
        if sent is None or routed is None or got is None:
            continue
        for name, span in zip(spans, (sent - due, routed - sent, got - routed), strict=True):
            spans[name].append(span)
    return {name: f"p50 {percentile(v, 50) * 1000:.0f} ms, p99 {percentile(v, 99) * 1000:.0f} ms"
            for name, v in spans.items()}
