"""The three-broker cluster: replicated topics survive the loss of one broker."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient

from eventrouter.dev.localkafka import LocalKafka
from schemas import EventCodec
from schemas.runtime.kafka import consumer_settings, ensure_topics, producer_settings
from tests.figures import Figures
from tests.unit.schemas.test_codec import full_message

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.slow]


def test_three_brokers_form_one_cluster(kafka_cluster: LocalKafka) -> None:
    status = kafka_cluster.status()
    assert [n.running for n in status.nodes] == [True, True, True]
    md = AdminClient({"bootstrap.servers": status.bootstrap}).list_topics(timeout=10)
    assert sorted(md.brokers) == [1, 2, 3]


def test_acked_events_survive_losing_a_broker(kafka_cluster: LocalKafka, topic_name: str, figures: Figures) -> None:
    bootstrap = kafka_cluster.status().bootstrap
    assert bootstrap is not None
    ensure_topics(bootstrap, [topic_name], partitions=3)
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic_name, timeout=10)
    assert all(len(p.replicas) == 3 for p in md.topics[topic_name].partitions.values())

    codec = EventCodec()
    acked: set[str] = set()

    def on_delivery(err: object, msg: Message) -> None:
        if err is None:
            acked.add(codec.decode(msg.value())["messageId"])

    def produce(ids: list[str]) -> None:
        producer = Producer(producer_settings(bootstrap, {"message.timeout.ms": 60_000}))
        for mid in ids:
            msg = full_message("track") | {"messageId": mid}
            producer.produce(topic_name, codec.encode(msg), key=mid.encode(), on_delivery=on_delivery)
            producer.poll(0)
        assert producer.flush(60) == 0

    produce([f"before-{i}" for i in range(200)])
    kafka_cluster.stop_node(2, kill=True)  # SIGKILL by PID: no clean shutdown
    try:
        produce([f"during-{i}" for i in range(200)])  # acks=all still succeeds with 2 of 3 in sync
    finally:
        kafka_cluster.restart_node(2)
    assert len(acked) == 400

    consumer = Consumer(consumer_settings(bootstrap, f"g-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([topic_name])
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while seen != acked and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=500, timeout=0.5):
            if m.error() is None:
                seen.add(codec.decode(m.value())["messageId"])
    consumer.close()
    assert seen == acked  # sets, not counts: nothing acknowledged was lost
    figures.report("one broker of three killed under load (producer)", acked=len(acked), lost=len(acked - seen))
