"""The process's broker watch: one line per change of a broker's state, whatever librdkafka repeats."""

from __future__ import annotations

import logging

import orjson
import pytest

from schemas.runtime.kafka_watch import BrokerWatch, address_of, reason_of

REFUSED = "127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: Connection refused (after 0ms in state CONNECT)"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def watch(clock: Clock) -> BrokerWatch:
    watch = BrokerWatch(logging.getLogger("test.kafka_watch"), clock)
    watch.meanwhile = "the worker waits for it"
    return watch


def _stats(state: str, nodename: str = "127.0.0.1:9") -> str:
    return orjson.dumps({"brokers": {f"{nodename}/1": {"nodename": nodename, "state": state}}}).decode()


def test_address_and_reason_are_read_from_librdkafka_text() -> None:
    assert address_of(REFUSED) == "127.0.0.1:9"
    assert reason_of(REFUSED) == "Connect to ipv4#127.0.0.1:9 failed: Connection refused"
    assert address_of("sasl_ssl://kafka-1.internal:9093/2: Connect to ipv4#10.0.0.1:9093 failed: x") == \
        "kafka-1.internal:9093"
    assert address_of("1/1 brokers are down") is None


def test_a_thousand_refused_connections_make_one_line_naming_the_address(
        watch: BrokerWatch, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.kafka_watch")
    for _ in range(1000):
        watch.error("_TRANSPORT", REFUSED)
        watch.error("_ALL_BROKERS_DOWN", "1/1 brokers are down")
        watch.client_log(logging.ERROR, "FAIL", REFUSED)
        clock.now += 0.05
    assert [r.getMessage() for r in caplog.records] == [
        "broker 127.0.0.1:9 unreachable since " + _hms(1_000.0)
        + " (Connect to ipv4#127.0.0.1:9 failed: Connection refused); the worker waits for it"]
    assert caplog.records[0].levelno == logging.WARNING
    assert watch.down() == {"127.0.0.1:9": 1_000.0}


def test_back_up_is_said_once_at_info_and_a_new_outage_is_said_again(
        watch: BrokerWatch, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.kafka_watch")
    watch.error("_TRANSPORT", REFUSED)
    clock.now += 42
    watch.stats(_stats("CONNECT"))
    assert watch.down()
    watch.stats(_stats("UP"))
    watch.stats(_stats("UP"))
    assert watch.down() == {}
    watch.error("_TRANSPORT", REFUSED)
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(messages) == 3
    assert messages[1] == (logging.INFO, "broker 127.0.0.1:9 reachable again after 42 s (1 failed attempts meanwhile)")
    assert messages[2][0] == logging.WARNING and "unreachable" in messages[2][1]


def test_a_disconnection_alone_is_not_an_outage(watch: BrokerWatch, caplog: pytest.LogCaptureFixture) -> None:
    # brokers close idle connections (connections.max.idle.ms); librdkafka reports each as _TRANSPORT
    watch.error("_TRANSPORT", "127.0.0.1:9092/1: Disconnected (after 600000ms in state UP)")
    assert watch.down() == {} and caplog.records == []


def test_other_errors_and_log_lines_are_said_once_a_minute_with_a_count(
        watch: BrokerWatch, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.kafka_watch")
    for _ in range(30):
        watch.error("_AUTHENTICATION", "SASL authentication error: Authentication failed")
        watch.client_log(logging.WARNING, "REQTMOUT", "Timed out 1 in-flight requests")
        clock.now += 3
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 4  # each kind at 0 s and at 60 s
    assert messages[2].endswith("(19 more like it in the last 60 s)")



def _hms(epoch: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(epoch))
