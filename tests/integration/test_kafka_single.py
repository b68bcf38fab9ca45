"""Every Segment call type through a real Kafka broker as Avro, and back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Producer

from eventrouter.dev.localkafka import LocalKafka
from schemas import EventCodec
from schemas.runtime.kafka import ensure_topics, producer_settings
from tests.integration.kafka_helpers import consume_all
from tests.unit.schemas.test_codec import CALLS, full_message

pytestmark = pytest.mark.kafka


def _consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[bytes]:
    return [m.value() for m in consume_all(bootstrap, topic, expected, timeout)]


def test_every_call_type_round_trips_through_kafka_as_avro(bootstrap: str, topic_name: str) -> None:
    ensure_topics(bootstrap, [topic_name], partitions=3)
    codec = EventCodec()
    messages = [full_message(t) | {"messageId": f"{t}-{i}"} for t in sorted(CALLS) for i in range(5)]
    errors: list[str] = []
    producer = Producer(producer_settings(bootstrap))
    for m in messages:
        producer.produce(topic_name, codec.encode(m), key=m["userId"].encode(),
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    assert producer.flush(30) == 0 and errors == []
    received = [codec.decode(v) for v in _consume_all(bootstrap, topic_name, len(messages))]
    assert sorted(received, key=lambda m: m["messageId"]) == sorted(messages, key=lambda m: m["messageId"])


def test_keyed_records_land_on_the_murmur2_partition(bootstrap: str, topic_name: str) -> None:
    """Our producers must agree with Java/aiokafka/Faust (murmur2) on where a user's events go."""
    from aiokafka.partitioner import DefaultPartitioner  # the partitioner Faust uses

    ensure_topics(bootstrap, [topic_name], partitions=6)
    producer = Producer(producer_settings(bootstrap))
    placed: dict[str, int] = {}
    for i in range(40):
        key = f"user-{i}"
        producer.produce(topic_name, b"x", key=key.encode(),
                         on_delivery=lambda _e, msg, key=key: placed.__setitem__(key, msg.partition()))
    producer.flush(30)
    partitioner = DefaultPartitioner()
    for key, partition in placed.items():
        assert partition == partitioner(key.encode(), list(range(6)), list(range(6)))


def test_cli_start_status_stop_by_pid(tmp_path: Path) -> None:
    env = {**os.environ, "EVENTROUTER_HOME": str(tmp_path)}
    cache = os.environ.get("EVENTROUTER_CACHE", str(Path(__file__).resolve().parents[2] / ".eventrouter" / "cache"))
    env["EVENTROUTER_CACHE"] = cache
    cli = [sys.executable, "-m", "eventrouter"]
    try:
        start = subprocess.run([*cli, "kafka", "start"], env=env, capture_output=True, text=True, timeout=180)
        assert start.returncode == 0, start.stderr
        bootstrap = start.stdout.strip()
        assert bootstrap.startswith("127.0.0.1:")
        status = subprocess.run([*cli, "kafka", "status"], env=env, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and bootstrap in status.stdout and "pid" in status.stdout
        pid = LocalKafka(tmp_path / "kafka", Path(cache)).status().nodes[0].pid
        assert pid is not None
    finally:
        stop = subprocess.run([*cli, "kafka", "stop"], env=env, capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not Path(f"/proc/{pid}").exists() or b"server.properties" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    gone = subprocess.run([*cli, "kafka", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert gone.returncode == 3 and "not running" in gone.stdout
