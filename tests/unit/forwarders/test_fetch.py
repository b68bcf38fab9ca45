"""How long the broker may hold a forwarder's fetch: half the batch linger, never for a linger under 10 ms."""

from forwarders.runner import fetch_settings


def test_a_lingering_forwarder_lets_the_broker_gather_records_for_half_the_linger() -> None:
    assert fetch_settings(25) == {"fetch.min.bytes": 1 << 20, "fetch.wait.max.ms": 12}


def test_the_broker_holds_a_fetch_at_most_100_ms_whatever_the_linger() -> None:
    assert fetch_settings(200)["fetch.wait.max.ms"] == 100
    assert fetch_settings(60_000)["fetch.wait.max.ms"] == 100


def test_a_forwarder_that_barely_lingers_keeps_librdkafkas_fetch_defaults() -> None:
    assert fetch_settings(0) == {}
    assert fetch_settings(9) == {}
