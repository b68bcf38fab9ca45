"""Forwarders against the real broker and the vendor stand-ins: every vendor's requests, batching and
splitting, retries that honour Retry-After, partial failures, dead letters once the budget is spent,
the retry topic, scrubbed secrets. (Kill and isolation tests: test_forwarder_faults.py.)"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from eventrouter.dev.standins import STAND_INS, AmplitudeStandIn, GA4StandIn, MixpanelStandIn
from schemas import Topics
from schemas.catalogue import KINDS
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderThread, integration, wait_for, write_outbound
from tests.integration.kafka_helpers import consume_all, fresh_topics
from tests.integration.vendor_cases import case
from tests.integration.worker_helpers import dead_letters

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SOME_REFUSED = "vendor 400 / 401 / 403 / 413 on some events"
LOCAL = {"allow_http": True, "allow_private": True}  # the stand-ins: plain http on loopback


@pytest.fixture
def amplitude() -> Iterator[AmplitudeStandIn]:
    stand_in = AmplitudeStandIn().start()
    yield stand_in
    stand_in.stop()


def amplitude_events(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"event_type": "Order Completed", "user_id": f"user-{i % 7:03d}", "time": 1_795_000_000_000 + i,
             "event_properties": {"n": i}} for i in range(start, start + n)]


def run_amplitude(bootstrap: str, topics: Topics, stand_in: AmplitudeStandIn, **delivery: Any) -> ForwarderThread:
    spec = integration("amp", "amplitude", {"api_key": delivery.pop("api_key", "amp-key"),
                                            "endpoint": stand_in.url + "/2/httpapi",
                                            "allow_http": True, "allow_private": True}, **delivery)
    return ForwarderThread(bootstrap, topics, spec)


def test_small_batches_of_several_partitions_share_one_request_and_each_user_stays_in_order(
        bootstrap: str, amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(600), partitions=3)
    runner = run_amplitude(bootstrap, topics, amplitude, linger_ms=500)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 600, what="600 events at the stand-in")
    finally:
        runner.stop()
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids) and amplitude.duplicates == 0
    # the partitions' events, read within one linger, went together: a request held more than any partition
    per_partition = Counter(m.partition() for m in consume_all(bootstrap, topics.integration("amp"), 600))
    assert len(per_partition) > 1 and max(amplitude.batches) > max(per_partition.values()), \
        (per_partition, amplitude.batches)
    by_user: dict[str, list[int]] = {}
    for event in amplitude.accepted:
        by_user.setdefault(event["user_id"], []).append(event["event_properties"]["n"])
    assert all(ns == sorted(ns) for ns in by_user.values())


def test_amplitude_batches_to_its_limit_and_delivers_every_event_once(bootstrap: str,
                                                                        amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(5000))
    runner = run_amplitude(bootstrap, topics, amplitude)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 5000, what="5000 events at the stand-in")
        wait_for(lambda: runner.forwarder.metrics.delivered._value.get() >= 5000, what="the delivered metric")
        receipts = [orjson.loads(m.value()) for m in consume_all(bootstrap, topics.receipts, 1, settle=2.0)]
    finally:
        runner.stop()
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids)
    assert amplitude.duplicates == 0
    assert max(amplitude.batches) <= 2000 and amplitude.requests < 5000 / 100
    # receipts: every event's outcome, status and attempts, by batch
    outcomes = [o for r in receipts for o in r["outcomes"]]
    assert sorted(m for o in outcomes for m in o["messageIds"]) == sorted(ids)
    assert {(o["state"], o["status"], o["attempts"]) for o in outcomes} == {("delivered", 200, 1)}
    assert all(r["integration"] == "amp" and r["latencyMs"]["max"] >= 0 for r in receipts)
    samples = runner.forwarder.metrics.registry
    assert samples.get_sample_value("eventrouter_forwarder_requests_total",
                                    {"integration": "amp", "status": "200"}) == amplitude.requests
    assert samples.get_sample_value("eventrouter_forwarder_latency_seconds_count", {"integration": "amp"}) == 5000


def test_413_splits_the_batch(bootstrap: str, amplitude: AmplitudeStandIn, figures: Figures) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(400), partitions=1)
    amplitude.fail(1, 413, body=b'{"code":413,"error":"Payload too large"}')
    runner = run_amplitude(bootstrap, topics, amplitude, linger_ms=2000)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 400, what="400 events")
    finally:
        runner.stop()
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids)
    assert amplitude.batches[0] == 0 and max(amplitude.batches[1:]) <= 200  # refused whole, then halves
    figures.report(SOME_REFUSED, case="413: split", sent=400, lost=0, duplicates=amplitude.duplicates,
                   requests_after_413=len(amplitude.batches) - 1)


def test_429_waits_for_retry_after(bootstrap: str, amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(50), partitions=1)
    amplitude.fail(2, 429, retry_after=1.5)
    runner = run_amplitude(bootstrap, topics, amplitude)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 50, what="50 events")
    finally:
        runner.stop()
    gaps = [b - a for a, b in zip(amplitude.times, amplitude.times[1:], strict=False)]
    assert amplitude.statuses[429] == 2 and amplitude.statuses[200] == 1
    assert min(gaps[:2]) >= 1.5, gaps
    assert amplitude.duplicates == 0
    assert runner.forwarder.limiter.rate is not None  # throttled: the open bucket now paces requests


def test_a_hung_vendor_times_out_and_is_retried(bootstrap: str, amplitude: AmplitudeStandIn, figures: Figures) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(20), partitions=1)
    amplitude.hang(1, 4.0)
    runner = run_amplitude(bootstrap, topics, amplitude, timeout_s=1.0)
    try:
        took = wait_for(lambda: len(amplitude.accepted) >= 20, what="20 events after the hang")
    finally:
        runner.stop()
    assert amplitude.duplicates == 0
    figures.report("vendor hangs or answers after the read timeout", hang_s=4.0, read_timeout_s=1.0,
                   delivered_after_s=took, lost=0, duplicates=amplitude.duplicates)


def test_amplitude_partial_failure_dead_letters_only_the_refused_events(bootstrap: str,
                                                                         amplitude: AmplitudeStandIn,
                                                                         figures: Figures) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    events = amplitude_events(30)
    for i in (3, 17):
        events[i]["user_id"] = "abc"  # under Amplitude's 5 characters
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", events, partitions=1)
    runner = run_amplitude(bootstrap, topics, amplitude, linger_ms=1000)
    try:
        wait_for(lambda: len(amplitude.accepted) >= 28, what="28 events")
        dead = dead_letters(bootstrap, topics.dead_letters("amp"), 2)
    finally:
        runner.stop()
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids[:3] + ids[4:17] + ids[18:])
    assert {d["messageId"] for d in dead} == {ids[3], ids[17]}
    assert {d["reason"] for d in dead} == {"vendor.invalid"} and {d["vendorStatus"] for d in dead} == {400}
    assert all(d["attempts"] == 1 and d["integration"] == "amp" for d in dead)
    assert amplitude.duplicates == 0
    figures.report(SOME_REFUSED, case="400 on 2 of 30", delivered=len(amplitude.accepted), lost=0,
                   dead_letters={"vendor.invalid/400": len(dead)})


def test_mixpanel_failed_records_are_dead_lettered_and_the_imported_never_resent(bootstrap: str) -> None:
    mixpanel = MixpanelStandIn().start()
    topics = fresh_topics(bootstrap, partitions=1)
    events = [{"event": "Viewed", "properties": {"time": 1_795_000_000_000 + i, "distinct_id": f"u{i % 5}"}}
              for i in range(40)]
    events[7]["properties"].pop("time")
    ids = write_outbound(bootstrap, topics, "mp", "mixpanel", events, partitions=1)
    spec = integration("mp", "mixpanel", {"project_id": "42", "username": "sa.user", "secret": "mp-secret",
                                          "endpoint": mixpanel.url + "/import",
                                          "allow_http": True, "allow_private": True}, linger_ms=1000)
    runner = ForwarderThread(bootstrap, topics, spec)
    try:
        dead = dead_letters(bootstrap, topics.dead_letters("mp"), 1)
        wait_for(lambda: len(mixpanel.accepted) >= 39, what="39 events")
    finally:
        runner.stop()
        mixpanel.stop()
    assert dead[0]["messageId"] == ids[7] and dead[0]["reason"] == "vendor.invalid"
    assert mixpanel.requests == 1 and mixpanel.duplicates == 0 and len(mixpanel.accepted) == 39


def test_retries_spent_dead_letters_with_the_vendor_status_and_a_scrubbed_body(bootstrap: str,
                                                                                amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(5), partitions=1)
    amplitude.fail(100, 503, body=b'{"error": "overloaded, key amp-key"}')
    runner = run_amplitude(bootstrap, topics, amplitude, max_attempts=3, max_retry_window_s=1.0)
    try:
        dead = dead_letters(bootstrap, topics.dead_letters("amp"), 5)
    finally:
        runner.stop()
    assert sorted(d["messageId"] for d in dead) == sorted(ids)
    assert {d["reason"] for d in dead} == {"retries_exhausted"} and {d["vendorStatus"] for d in dead} == {503}
    assert all(d["attempts"] >= 3 and d["lastAttemptAt"] - d["firstAttemptAt"] >= 1000 for d in dead)
    assert all("amp-key" not in (d["vendorBody"] or "") and "***" in d["vendorBody"] for d in dead)


def test_a_wrong_key_is_final_and_never_leaks_into_dead_letters(bootstrap: str, amplitude: AmplitudeStandIn,
                                                               figures: Figures) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(3), partitions=1)
    runner = run_amplitude(bootstrap, topics, amplitude, api_key="canary-Zx81-secret")
    try:
        dead = dead_letters(bootstrap, topics.dead_letters("amp"), 3)
    finally:
        runner.stop()
    assert {d["reason"] for d in dead} == {"vendor.rejected"} and amplitude.requests == 1
    assert not any("canary-Zx81" in repr(d) for d in dead)
    figures.report(SOME_REFUSED, case="wrong key: final", requests=amplitude.requests, lost=0,
                   dead_letters={"vendor.rejected": len(dead)}, key_leaked=0)


def test_long_waits_move_to_the_retry_topic_and_are_delivered_when_due(bootstrap: str,
                                                                       amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(10), partitions=1)
    amplitude.fail(1, 503, retry_after=2.0)
    runner = run_amplitude(bootstrap, topics, amplitude, retry_in_place_s=0.5)
    try:
        took = wait_for(lambda: len(amplitude.accepted) >= 10, what="10 events via the retry topic")
        retried = runner.forwarder.metrics.retried._value.get()
    finally:
        runner.stop()
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids)
    assert retried == 10 and took >= 2.0
    assert amplitude.times[1] - amplitude.times[0] >= 2.0


def _golden(vendor: str) -> list[dict[str, Any]]:
    cases = json.loads((GOLDEN / f"{vendor}.json").read_text())
    return [c["payload"] for c in cases.values() if "payload" in c]


def _fresh(kind: str, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The golden payloads with their times moved to a minute ago where the vendor refuses old events (the
    fixtures age)."""
    now_s = int(time.time()) - 60
    return [STAND_INS[kind].freshen(p, now_s) for p in payloads]


# what a starter kit's golden payloads need of a connection beyond the conformance case's
GOLDEN_SETTINGS: dict[str, dict[str, Any]] = {"amplitude": {"min_id_length": 1}}


@pytest.mark.parametrize("kind", KINDS)
def test_every_vendor_accepts_what_its_starter_kit_makes(bootstrap: str, kind: str) -> None:
    """The golden payloads of each starter playbook, through the forwarder, pass the stand-in's checks."""
    payloads = _fresh(kind, _golden(kind))
    made = case(kind)
    stand_in = made.stand_in
    connection = {**made.connection, **GOLDEN_SETTINGS.get(kind, {})}
    topics = fresh_topics(bootstrap, partitions=1)
    write_outbound(bootstrap, topics, kind, kind, payloads, partitions=1)
    runner = ForwarderThread(bootstrap, topics, integration(kind, kind, connection))
    try:
        wait_for(lambda: len(stand_in.accepted) >= len(payloads), timeout=30, what=f"{kind} events")
    finally:
        runner.stop()
        stand_in.stop()
    assert len(stand_in.accepted) == len(payloads) and stand_in.duplicates == 0
    assert set(stand_in.statuses) <= {200, 201, 202, 204}, stand_in.statuses
    if isinstance(stand_in, GA4StandIn):
        assert stand_in.dropped == []


def test_lag_is_measured_without_stalling_and_the_buffer_is_bounded(bootstrap: str,
                                                                     amplitude: AmplitudeStandIn) -> None:
    topics = fresh_topics(bootstrap, partitions=1)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(20_000), partitions=1)
    amplitude.hang(1, 8.0)  # the first request hangs: the forwarder reads ahead until its buffer is full
    runner = run_amplitude(bootstrap, topics, amplitude, timeout_s=30)
    lag = runner.forwarder.metrics.lag
    buffered: list[int] = []

    def read_ahead() -> int:
        states = list(runner.forwarder._partitions.values())
        held = sum(len(p.buffer) + sum(len(f.batch) for f in p.flights) for p in states)
        buffered.append(held)
        return held
    try:
        wait_for(lambda: lag._value.get() > 0, timeout=20, what="a lag while the vendor hangs")
        behind = lag._value.get()
        wait_for(lambda: read_ahead() < 0 or len(amplitude.accepted) >= 20_000, timeout=60, what="every event")
        wait_for(lambda: lag._value.get() == 0, timeout=20, what="no lag once delivered")
    finally:
        runner.stop()
    assert behind == 20_000  # nothing settled while the first request hangs: all of it is lag
    assert 0 < max(buffered) <= 4 * 2000 + 2000 + 2000  # read ahead at most four batches (and a fetch), one in hand
    assert sorted(e["insert_id"] for e in amplitude.accepted) == sorted(ids) and amplitude.duplicates == 0
