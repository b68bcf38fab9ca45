"""The destination guard on a real forwarder (forwarders/ssrf.py, forwarders/transport.py): an amplitude
integration without the opt-in whose endpoint name resolves to loopback sends nothing there and
dead-letters its events (`forwarder.unsafe_destination`) while another integration keeps delivering;
a loopback endpoint written as such is refused at start, and so is one whose network the operator
did not list, opt-in or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventrouter.dev.standins import AmplitudeStandIn
from forwarders.runner import Forwarder
from schemas.errors import ConfigurationError
from tests.integration.forwarder_helpers import ForwarderThread, integration, wait_for, write_outbound
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.worker_helpers import dead_letters

OPT_IN = {"allow_http": True, "allow_private": True}


def events(n: int) -> list[dict[str, object]]:
    return [{"event_type": "Order Completed", "user_id": f"user-{i % 3}", "time": 1_795_000_000_000 + i}
            for i in range(n)]


@pytest.fixture
def stand_ins() -> Iterator[tuple[AmplitudeStandIn, AmplitudeStandIn]]:
    internal, vendor = AmplitudeStandIn().start(), AmplitudeStandIn().start()
    yield internal, vendor
    internal.stop()
    vendor.stop()


def test_a_name_resolving_to_loopback_is_dead_lettered_while_another_integration_delivers(
        bootstrap: str, stand_ins: tuple[AmplitudeStandIn, AmplitudeStandIn]) -> None:
    internal, vendor = stand_ins
    topics = fresh_topics(bootstrap)
    port = internal.url.rsplit(":", 1)[1]
    # http is allowed (the opt-in that is the config's alone), private targets are not
    sneaky = integration("amp-sneaky", "amplitude", {"api_key": "amp-key", "allow_http": True,
                                                     "endpoint": f"http://amplitude.internal.test:{port}/2/httpapi"})
    honest = integration("amp", "amplitude", {"api_key": "amp-key", "endpoint": vendor.url + "/2/httpapi", **OPT_IN})
    runners = []
    try:
        runners.append(ForwarderThread(bootstrap, topics, sneaky))
        # the name resolves to loopback (as a hostile DNS record would); set before any event is written
        runners[0].forwarder.transport.resolver = lambda host, port: ["127.0.0.1"]
        runners.append(ForwarderThread(bootstrap, topics, honest))
        sneaky_ids = write_outbound(bootstrap, topics, "amp-sneaky", "amplitude", events(20))
        honest_ids = write_outbound(bootstrap, topics, "amp", "amplitude", events(20))
        dead = dead_letters(bootstrap, topics.dead_letters("amp-sneaky"), 20)
        wait_for(lambda: len(vendor.accepted) >= 20, what="the other integration's 20 events")
    finally:
        for runner in runners:
            runner.stop()
    assert sorted(d["messageId"] for d in dead) == sorted(sneaky_ids)
    assert {d["reason"] for d in dead} == {"forwarder.unsafe_destination"}
    assert internal.requests == 0 and internal.accepted == []
    assert sorted(e["insert_id"] for e in vendor.accepted) == sorted(honest_ids)


def test_a_loopback_endpoint_is_refused_at_start_without_both_opt_ins(
        bootstrap: str, stand_ins: tuple[AmplitudeStandIn, AmplitudeStandIn],
        monkeypatch: pytest.MonkeyPatch) -> None:
    internal, _ = stand_ins
    topics = fresh_topics(bootstrap)
    endpoint = internal.url + "/2/httpapi"
    with pytest.raises(ConfigurationError, match=r"connection\.endpoint: .*loopback"):
        Forwarder(bootstrap, topics, integration("amp", "amplitude", {"api_key": "k", "endpoint": endpoint,
                                                                      "allow_http": True}))
    monkeypatch.setenv("EVENTROUTER_PRIVATE_NETWORKS", "10.0.0.0/8")  # the operator lists another network
    with pytest.raises(ConfigurationError, match="does not list"):
        Forwarder(bootstrap, topics, integration("amp", "amplitude", {"api_key": "k", "endpoint": endpoint,
                                                                      **OPT_IN}))
    assert internal.requests == 0
