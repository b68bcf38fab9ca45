"""faust-streaming 0.15.3 on aiokafka 0.14 works against the embedded Kafka version (our version choice)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer

from schemas.runtime.kafka import consumer_settings, ensure_topics, producer_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_a_faust_worker_consumes_and_produces_on_our_kafka(bootstrap: str, topic_name: str, tmp_path: Path) -> None:
    src, dst = f"{topic_name}.in", f"{topic_name}.out"
    ensure_topics(bootstrap, [src, dst], partitions=1)
    env = {**os.environ, "PROBE_BOOTSTRAP": bootstrap, "PROBE_IN": src, "PROBE_OUT": dst,
           "PROBE_DATADIR": str(tmp_path / "faust")}
    log = open(tmp_path / "faust.log", "wb")  # noqa: SIM115 - handed to the child, closed below
    worker = subprocess.Popen([sys.executable, "-m", "faust", "-A", "tests.integration.faust_probe", "worker",
                               "--without-web", "-l", "warn"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        producer = Producer(producer_settings(bootstrap))
        sent = {f"v-{i}-{uuid.uuid4().hex[:6]}".encode() for i in range(50)}
        for value in sent:
            producer.produce(src, value)
        assert producer.flush(30) == 0
        consumer = Consumer(consumer_settings(bootstrap, f"g-{uuid.uuid4().hex[:8]}"))
        consumer.subscribe([dst])
        got: set[bytes] = set()
        deadline = time.monotonic() + 90
        while got != sent and time.monotonic() < deadline and worker.poll() is None:
            for msg in consumer.consume(num_messages=100, timeout=0.5):
                if msg.error() is None:
                    got.add(msg.value())
        consumer.close()
        assert got == sent, (tmp_path / "faust.log").read_text(errors="replace")[-3000:]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        log.close()
