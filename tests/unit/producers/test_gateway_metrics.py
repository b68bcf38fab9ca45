"""The gateway's ledger of events Kafka had not confirmed when their 503 went out."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import generate_latest

from producers.gateway_metrics import GatewayMetrics, Outages


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _value(metrics: GatewayMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_an_outage_is_two_lines_and_every_unconfirmed_event_is_counted_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.gateway")
    metrics, clock = GatewayMetrics(), Clock()
    outages = Outages(metrics, 5.0, clock, logging.getLogger("test.gateway"))
    for _ in range(40):  # 40 requests of 25 events each time out
        outages.answered_503(25, "no acknowledgement within 5 s")
    outages.answered_200()  # an answer in time does not end it while events are unsettled
    clock.now += 30
    for i in range(1000):
        outages.settled_late(ok=i % 100 != 0)
    outages.answered_200()
    assert _value(metrics, "eventrouter_gateway_unavailable_total") == 40
    assert _value(metrics, "eventrouter_gateway_unconfirmed_total") == 1000
    assert _value(metrics, "eventrouter_gateway_late_acked_total") == 990
    assert _value(metrics, "eventrouter_gateway_failed_total") == 10
    assert _value(metrics, "eventrouter_gateway_unconfirmed_pending") == 0
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "kafka did not acknowledge within 5.0 s (no acknowledgement within 5 s): answering 503 "
                          "with Retry-After until it does; the events left unconfirmed are counted"),
        (logging.WARNING, "kafka outage settled 30 s after its first 503: 40 requests answered 503; 1000 events "
                          "unconfirmed at the answer: 990 acknowledged later, 10 failed for good")]


def test_a_503_with_nothing_left_queued_ends_at_the_next_200(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.gateway")
    metrics = GatewayMetrics()
    outages = Outages(metrics, 5.0, Clock(), logging.getLogger("test.gateway"))
    outages.failed_in_time()
    outages.answered_503(0, "cannot publish to t: Unknown topic")
    outages.answered_503(0, "cannot publish to t: Unknown topic")
    assert len(caplog.records) == 1
    outages.answered_200()
    assert len(caplog.records) == 2 and caplog.records[1].levelno == logging.INFO
    assert "2 requests answered 503; 0 events unconfirmed" in caplog.records[1].getMessage()
    assert b"eventrouter_gateway_failed_total 1.0" in generate_latest(metrics.registry)


def test_refusals_are_logged_once_per_reason_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    from producers.gateway_metrics import RefusalLog

    now = [0.0]
    refusals = RefusalLog(interval=10, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="producers.gateway"):
        for _ in range(1000):
            refusals.refused("auth", 401, "/v1/track", "127.0.0.1")
        refusals.refused("bad_json", 400, "/v1/track", "127.0.0.1")
        now[0] = 10.0
        refusals.refused("auth", 401, "/v1/track", "127.0.0.1")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "reason=bad_json" in lines[1]
    assert "(and 999 more refused for this reason in the last 10 s)" in lines[2]
