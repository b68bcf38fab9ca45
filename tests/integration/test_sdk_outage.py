"""The broker stops for 10 s under load: nothing acknowledged is lost, everything else is reported.

Runs on a broker of its own, so stopping it disturbs no other test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventrouter.dev.localkafka import LocalKafka
from producers import Analytics
from schemas import EventCodec
from tests.conftest import _start
from tests.figures import Figures
from tests.integration.kafka_helpers import consume_all, fresh_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = _start(Path(tmp_path_factory.mktemp("kafka-outage")), nodes=1)
    yield kafka
    kafka.stop()


def _bootstrap(kafka: LocalKafka) -> str:
    bootstrap = kafka.status().bootstrap
    assert bootstrap is not None
    return bootstrap


def test_broker_stopped_10s_under_load_loses_nothing_acknowledged(own_broker: LocalKafka, figures: Figures) -> None:
    bootstrap = _bootstrap(own_broker)
    topics = fresh_topics(bootstrap)
    reported: set[str] = set()
    analytics = Analytics("wk", bootstrap, topic=topics.raw,
                          on_error=lambda _e, batch: reported.update(m["messageId"] for m in batch))
    attempted: list[str] = []
    stop = threading.Event()

    def load() -> None:  # ~1,000 calls/s, open loop, until told to stop
        i = 0
        while not stop.is_set():
            _ok, message = analytics.track(f"user-{i % 50}", "Under Outage", {"seq": i})
            attempted.append(message["messageId"])
            i += 1
            time.sleep(0.001)

    sender = threading.Thread(target=load)
    sender.start()
    time.sleep(3)
    own_broker.stop_node(1, kill=True)
    stopped_at = len(attempted)
    time.sleep(10)
    own_broker.restart_node(1)
    time.sleep(3)
    stop.set()
    sender.join()
    assert analytics.flush() == 0
    stats = analytics.stats()
    analytics.close()

    assert len(attempted) > stopped_at + 1000, "calls kept being accepted while the broker was down"
    assert stats["queued"] == len(attempted) == stats["acked"] + stats["failed"]
    acknowledged = set(attempted) - reported
    codec = EventCodec()
    received = {codec.decode(m.value())["messageId"]
                for m in consume_all(bootstrap, topics.raw, len(acknowledged), timeout=60)}
    assert acknowledged <= received  # nothing acknowledged is lost
    assert set(attempted) == received | reported  # and whatever did not arrive was reported
    assert reported == set()  # a 10 s outage is well inside the 120 s delivery timeout: all delivered
    figures.report("broker stopped for 10 s under load, then restarted", attempted=len(attempted),
                   during_outage=len(attempted) - stopped_at, lost=len(acknowledged - received), reported=len(reported))


def test_broker_down_longer_than_the_delivery_timeout_reports_every_event(own_broker: LocalKafka,
                                                                          figures: Figures) -> None:
    bootstrap = _bootstrap(own_broker)
    topics = fresh_topics(bootstrap)
    reports: list[tuple[Exception, list[dict[str, Any]]]] = []
    analytics = Analytics("wk", bootstrap, topic=topics.raw, producer_config={"message.timeout.ms": 3000},
                          on_error=lambda e, batch: reports.append((e, batch)))
    analytics.track("u", "Before", message_id="before")
    assert analytics.flush() == 0
    own_broker.stop_node(1)
    try:
        ids = [analytics.track("u", "While Down", {"i": i})[1]["messageId"] for i in range(200)]
        started = time.monotonic()
        assert analytics.flush() == 0
        assert time.monotonic() - started < 30
    finally:
        own_broker.restart_node(1)
    assert sorted(m["messageId"] for _e, batch in reports for m in batch) == sorted(ids)
    assert all("not acknowledged by Kafka" in str(e) for e, _batch in reports)
    assert analytics.stats()["failed"] == 200
    figures.report("broker down longer than the producer's message timeout", attempted=200,
                   reported_to_caller=sum(len(b) for _e, b in reports), vanished=0)
    analytics.close()


@pytest.mark.parametrize("engine", ["kafka", "faust"])
def test_the_whole_pipeline_rides_out_a_10s_broker_outage(own_broker: LocalKafka, tmp_path: Path,
                                                          figures: Figures, engine: str) -> None:
    """SDK, worker and forwarder running; the only broker stops for 10 s under load: the producers buffer
    and retry, the consumers reconnect, and every acknowledged event reaches the vendor."""
    from eventrouter.dev.standins import AmplitudeStandIn
    from tests.integration.forwarder_helpers import wait_for
    from tests.integration.stack_helpers import amplitude_stack, wait_until_assigned

    bootstrap = _bootstrap(own_broker)
    topics = fresh_topics(bootstrap)
    amplitude = AmplitudeStandIn().start()
    stack = amplitude_stack(bootstrap, topics, tmp_path, amplitude, engine=engine)
    reported: set[str] = set()
    sent: list[str] = []
    analytics = Analytics("wk1", bootstrap, topic=topics.raw,
                          on_error=lambda _e, batch: reported.update(m["messageId"] for m in batch))
    stop = threading.Event()

    def load() -> None:  # ~500 calls/s until told to stop
        i = 0
        while not stop.is_set():
            _ok, message = analytics.track(f"user-{i % 30}", "Order Completed", {"i": i}, message_id=f"out-{i}")
            sent.append(message["messageId"])
            i += 1
            time.sleep(0.002)

    sender = threading.Thread(target=load)
    try:
        wait_until_assigned(stack)
        sender.start()
        wait_for(lambda: len(amplitude.keys) >= 500, timeout=60, what="delivery under way")
        own_broker.stop_node(1, kill=True)
        time.sleep(10)
        own_broker.restart_node(1)
        restarted = time.monotonic()
        time.sleep(3)
        stop.set()
        sender.join()
        assert analytics.flush(120) == 0
        acked = set(sent) - reported
        wait_for(lambda: acked <= set(amplitude.keys), timeout=180, what="every acknowledged event at the vendor")
        recovered = time.monotonic() - restarted
        assert not stack.exited(), stack.exited()
    finally:
        stop.set()
        analytics.close()
        stack.stop()
        amplitude.stop()
    lost = acked - set(amplitude.keys)
    figures.report("broker stopped for 10 s under load, then restarted (SDK, worker, forwarder)", engine=engine,
                   sent=len(sent), acked=len(acked), reported=len(reported), lost=len(lost),
                   duplicates=amplitude.duplicates, recovery_s=recovered)
    assert not lost and not reported
