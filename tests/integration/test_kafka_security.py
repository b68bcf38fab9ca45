"""A broker with SASL/SCRAM-SHA-512 over TLS: a client with a wrong password is refused, the right one
works, and the settings of $EVENTROUTER_KAFKA_CONFIG reach every client of every process (SDK, gateway,
config store, worker of either engine, forwarder, status)."""

from __future__ import annotations

import atexit
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from confluent_kafka import Consumer, Producer

from eventrouter.cli import main
from eventrouter.dev.localkafka import LocalKafka
from eventrouter.dev.standins import AmplitudeStandIn
from producers import Analytics
from schemas import Topics
from schemas.runtime.kafka import KAFKA_CONFIG_ENV, consumer_settings, ensure_topics, producer_settings
from tests.conftest import _cache_dir
from tests.figures import Figures
from tests.integration.forwarder_helpers import wait_for
from tests.integration.stack_helpers import amplitude_stack

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
PASSWORD = f"pw-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(bootstrap, client.properties) of a SCRAM + TLS broker; the password is a ${ENV} reference."""
    folder = tmp_path_factory.mktemp("kafka-scram")
    kafka = LocalKafka(folder / "state", _cache_dir())
    atexit.register(kafka.stop)
    try:
        status = kafka.start(scram_users={"eventrouter": PASSWORD}, tls=True)
        assert status.bootstrap is not None
        properties = folder / "client.properties"
        properties.write_text(kafka.client_properties("eventrouter", "${EVENTROUTER_KAFKA_PASSWORD}"))
        yield status.bootstrap, properties
    finally:
        kafka.stop()


def test_a_wrong_password_is_refused_and_the_right_one_works(secured: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                             figures: Figures) -> None:
    bootstrap, properties = secured
    monkeypatch.setenv(KAFKA_CONFIG_ENV, str(properties))
    monkeypatch.setenv("EVENTROUTER_KAFKA_PASSWORD", "not-the-password")
    errors: list[Any] = []
    reports: list[Any] = []
    wrong = Producer(producer_settings(bootstrap, {"error_cb": errors.append, "message.timeout.ms": 5000}))
    wrong.produce("anything", b"x", on_delivery=lambda err, _msg: reports.append(err))
    started = time.monotonic()
    while not errors and time.monotonic() - started < 20:
        wrong.poll(0.2)
    refused = [e for e in errors if "Authentication failed" in e.str() or e.name() == "_AUTHENTICATION"]
    assert refused, [e.str() for e in errors]
    wrong.flush(10)
    assert reports and reports[0] is not None, "nothing was written with the wrong password"
    assert PASSWORD not in str([e.str() for e in errors])

    monkeypatch.setenv("EVENTROUTER_KAFKA_PASSWORD", PASSWORD)
    topic = f"secured-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic], partitions=1)
    right = Producer(producer_settings(bootstrap))
    for i in range(10):
        right.produce(topic, f"m{i}".encode())
    assert right.flush(30) == 0
    consumer = Consumer(consumer_settings(bootstrap, f"g-{uuid.uuid4().hex[:6]}"))
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        got += [m.value() for m in consumer.consume(num_messages=10, timeout=1.0) if m.error() is None]
    consumer.close()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(10))
    figures.report("Kafka SASL/SCRAM-SHA-512 over TLS", wrong_password="refused (authentication failed)",
                   right_password=f"{len(got)}/10 read back", leaked=0)


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_every_process_takes_the_security_settings(secured: tuple[str, Path], tmp_path: Path, engine: str,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap, properties = secured
    env = {KAFKA_CONFIG_ENV: str(properties), "EVENTROUTER_KAFKA_PASSWORD": PASSWORD, "AMP_KEY": "amp-key"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    amplitude = AmplitudeStandIn().start()
    topics = Topics(f"s{uuid.uuid4().hex[:8]}")
    stack = amplitude_stack(bootstrap, topics, tmp_path, amplitude, gateway=True, env=env, engine=engine)
    try:
        with Analytics("wk1", bootstrap, topic=topics.raw) as analytics:
            for i in range(50):
                analytics.track(f"user-{i % 5}", "Order Completed", {"i": i}, message_id=f"sdk-{i}")
            assert analytics.flush(30) == 0
        url = f"http://127.0.0.1:{stack.gateway_port}/v1/batch"
        batch = [{"type": "track", "event": "Order Completed", "userId": "gateway-user", "messageId": f"gw-{i}"}
                 for i in range(50)]
        wait_for(lambda: _post(url, batch), timeout=60, what="the gateway to take a batch")
        wait_for(lambda: len(amplitude.keys) >= 100, timeout=90, what="100 events through the secured stack")
        assert not stack.exited(), stack.exited()
        assert main(["status", "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix]) == 0
        assert "amp " in capsys.readouterr().out
    finally:
        stack.stop()
        amplitude.stop()
    assert set(amplitude.keys) == {f"sdk-{i}" for i in range(50)} | {f"gw-{i}" for i in range(50)}


def _post(url: str, batch: list[dict[str, Any]]) -> bool:
    try:
        return requests.post(url, json={"batch": batch}, auth=("wk1", ""), timeout=10).status_code == 200
    except requests.ConnectionError:
        return False
