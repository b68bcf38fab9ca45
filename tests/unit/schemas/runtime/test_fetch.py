"""How long the broker may hold a fetch: half of what the consumer gathers anyway (a forwarder's linger, a
worker's batch), at most 100 ms; never for a gathering under 10 ms."""

from schemas.runtime.kafka import fetch_settings


def test_a_lingering_forwarder_lets_the_broker_gather_records_for_half_the_linger() -> None:
    assert fetch_settings(25) == {"fetch.min.bytes": 1 << 20, "fetch.wait.max.ms": 12}


def test_the_broker_holds_a_fetch_at_most_100_ms_whatever_the_linger() -> None:
    assert fetch_settings(200)["fetch.wait.max.ms"] == 100
    assert fetch_settings(60_000)["fetch.wait.max.ms"] == 100


def test_a_forwarder_that_barely_lingers_keeps_librdkafkas_fetch_defaults() -> None:
    assert fetch_settings(0) == {}
    assert fetch_settings(9) == {}


def test_the_workers_batch_of_50_ms_lets_the_broker_hold_its_fetch_25_ms() -> None:
    assert fetch_settings(50)["fetch.wait.max.ms"] == 25
