"""The SDK's two producers: fire-and-forget calls linger 25 ms, calls that wait for their acknowledgement 10.
Neither connects until used, so no broker is needed here."""

from producers import Analytics


def test_fire_and_forget_calls_linger_longer_than_the_calls_that_wait() -> None:
    analytics = Analytics("wk", "127.0.0.1:1", topic="t")
    assert analytics._publisher.settings["linger.ms"] == 25
    assert analytics._acking.settings["linger.ms"] == 10


def test_a_linger_the_caller_gives_wins_for_both() -> None:
    analytics = Analytics("wk", "127.0.0.1:1", topic="t", producer_config={"linger.ms": 2})
    assert (analytics._publisher.settings["linger.ms"], analytics._acking.settings["linger.ms"]) == (2, 2)
