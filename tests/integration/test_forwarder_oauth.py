"""A vendor whose requests carry a short-lived OAuth2 token (Google Ads), through a real forwarder on the
real broker: one token serves every request; when the vendor expires it early, the forwarder fetches
another and the events go through, none lost or counted twice; a refresh token the vendor no longer
grants dead-letters the events (`vendor.auth`) without looping."""

from __future__ import annotations

from eventrouter.dev.standins import GoogleAdsStandIn
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderThread, integration, wait_for, write_outbound
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.vendor_cases import case
from tests.integration.worker_helpers import dead_letters


def test_an_expired_token_is_replaced_and_a_revoked_grant_dead_letters(bootstrap: str, figures: Figures) -> None:
    vendor = case("google_ads")
    stand_in = vendor.stand_in
    assert isinstance(stand_in, GoogleAdsStandIn)
    topics = fresh_topics(bootstrap, partitions=1)

    def send(prefix: str, n: int) -> list[str]:
        payloads = [{**vendor.payload(i, f"{prefix}-{i}"), "_messageId": f"{prefix}-{i}"} for i in range(n)]
        return write_outbound(bootstrap, topics, "ads", "google_ads", payloads, partitions=1)

    runner = ForwarderThread(bootstrap, topics, integration("ads", "google_ads", vendor.connection))
    try:
        first = send("a", 40)
        wait_for(lambda: len(vendor.accepted_ids()) >= 40, timeout=60, what="the first 40 conversions")
        fetched_before = stand_in.token_requests
        stand_in.expire_tokens()  # revoked early: the forwarder still thinks its token has an hour left
        second = send("b", 40)
        wait_for(lambda: len(vendor.accepted_ids()) >= 80, timeout=60, what="40 more, with a new token")
        fetched_after = stand_in.token_requests
        stand_in.refresh_token = "revoked-refresh-token"  # the user revoked the grant
        stand_in.expire_tokens()
        third = send("c", 5)
        dead = dead_letters(bootstrap, topics.dead_letters("ads"), 5, timeout=60)
    finally:
        runner.stop()
        stand_in.stop()
    assert fetched_before == 1 and fetched_after == 2
    assert sorted(vendor.accepted_ids()) == sorted(first + second)  # each once: none lost, none twice
    assert sorted(d["messageId"] for d in dead) == sorted(third)
    assert all(d["reason"].startswith("vendor.auth") for d in dead) and stand_in.token_requests <= 4
    figures.report("OAuth2 token expired early, then the grant revoked", vendor="google_ads", delivered=80,
                   token_fetches=fetched_after, lost=0, dead_letters={"vendor.auth": len(dead)})
