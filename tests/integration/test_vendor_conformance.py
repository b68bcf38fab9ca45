"""The shared conformance tests, run for every vendor module against its stand-in on the real broker:
delivered once each; 429 + Retry-After waited out; 5xx until the budget is spent -> dead letters with the
vendor's status; SIGKILL between the vendor's 2xx and the commit -> nothing lost, and only what the vendor
had accepted is sent again, under the same idempotency key (where the vendor has one); one refused event of
a batch dead-lettered alone while the others are delivered; a replayed window sent under the same dedup
keys."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from eventrouter.dev.standins.server import Answer, Incoming
from forwarders.vendors import VENDORS
from schemas.catalogue import KINDS
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderProcess, ForwarderThread, integration, wait_for, write_outbound
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.vendor_cases import SECRETS, case
from tests.integration.worker_helpers import dead_letters


def _payloads(vendor_case, n: int, prefix: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [{**vendor_case.payload(i, f"{prefix}-{i}"), "_messageId": f"{prefix}-{i}"} for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_429_with_retry_after_is_waited_out_and_every_event_arrives_once(bootstrap: str, kind: str,
                                                                        figures: Figures) -> None:
    vendor = case(kind)
    topics = fresh_topics(bootstrap, partitions=1)
    ids = write_outbound(bootstrap, topics, kind, kind, _payloads(vendor, 60, "ra"), partitions=1)
    vendor.stand_in.fail(2, 429, retry_after=1.0)
    sent: list[tuple[float, bytes, int]] = []  # (arrival, body, status) per request
    handle = vendor.stand_in.handle

    def noting(incoming: Incoming) -> Answer:
        arrived = time.monotonic()
        answer = handle(incoming)
        sent.append((arrived, incoming.body, answer.status))
        return answer

    vendor.stand_in.handle = noting  # type: ignore[method-assign]
    runner = ForwarderThread(bootstrap, topics, integration(kind, kind, vendor.connection))
    try:
        wait_for(lambda: len(vendor.accepted_ids()) >= 60, timeout=60, what=f"{kind}: 60 events")
    finally:
        runner.stop()
        vendor.stand_in.stop()
    assert sorted(vendor.accepted_ids()) == sorted(ids)
    # each refused request is sent again (the same events, so the same body) no sooner than Retry-After; the
    # two 429s are one request twice (one request a batch) or two requests at once (GA4: one per client)
    sent.sort()
    gaps = [min(t for t, again, _ in sent if again == body and t > at) - at for at, body, status in sent
            if status == 429]
    assert len(gaps) == 2 and min(gaps) >= 1.0
    figures.report("vendor 429 with Retry-After", vendor=kind, retry_after_s=1.0, least_gap_s=min(gaps), lost=0,
                   duplicates=len(vendor.accepted_ids()) - len(set(vendor.accepted_ids())))


@pytest.mark.parametrize("kind", KINDS)
def test_a_vendor_failing_for_good_dead_letters_every_event_once_the_budget_is_spent(bootstrap: str,
                                                                                     kind: str,
                                                                                     figures: Figures) -> None:
    vendor = case(kind)
    topics = fresh_topics(bootstrap, partitions=1)
    ids = write_outbound(bootstrap, topics, kind, kind, _payloads(vendor, 5, "dl"), partitions=1)
    vendor.stand_in.fail(1000, 500, body=f'{{"error": "internal", "echo": "{SECRETS[kind]}"}}'.encode())
    spec = integration(kind, kind, vendor.connection, max_attempts=2, max_retry_window_s=0.5)
    runner = ForwarderThread(bootstrap, topics, spec)
    try:
        dead = dead_letters(bootstrap, topics.dead_letters(kind), 5, timeout=60)
    finally:
        runner.stop()
        vendor.stand_in.stop()
    assert sorted(d["messageId"] for d in dead) == sorted(ids)
    assert {(d["reason"], d["vendorStatus"]) for d in dead} == {("retries_exhausted", 500)}
    assert all(d["attempts"] >= 2 and SECRETS[kind] not in (d["vendorBody"] or "") for d in dead)
    figures.report("vendor 5xx until the retry budget is spent", vendor=kind, lost=0,
                   dead_letters={"retries_exhausted": len(dead)}, least_attempts=min(d["attempts"] for d in dead))


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_between_the_2xx_and_the_commit_loses_nothing(bootstrap: str, kind: str, tmp_path: Path,
                                                              figures: Figures) -> None:
    vendor = case(kind)
    topics = fresh_topics(bootstrap)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(f"integrations:\n  - name: {kind}\n    kind: {kind}\n    playbook: {{}}\n"
                      f"    delivery: {{linger_ms: 100}}\n    connection: {vendor.connection_yaml}\n")
    ids = write_outbound(bootstrap, topics, kind, kind, _payloads(vendor, 600, "kill"))
    stand_in = vendor.stand_in
    original = stand_in.answer
    first = ForwarderProcess(bootstrap, topics, config, kind, tmp_path, env={"SECRET": SECRETS[kind]}, tag="-1")
    killed: list[int] = []

    def answer_then_kill(incoming):  # type: ignore[no-untyped-def]
        answer = original(incoming)
        if not killed and 200 <= answer.status < 300:
            killed.append(len(stand_in.accepted))
            first.process.send_signal(signal.SIGKILL)
        return answer
    stand_in.answer = answer_then_kill  # type: ignore[method-assign]
    try:
        first.process.wait(90)
        accepted_before = set(vendor.accepted_ids())
        second = ForwarderProcess(bootstrap, topics, config, kind, tmp_path, env={"SECRET": SECRETS[kind]}, tag="-2")
        # the first forwarder committed nothing: the second sends everything, and so what the vendor had
        wait_for(lambda: len(vendor.accepted_ids()) >= len(ids) + len(accepted_before), timeout=90,
                 what=f"{kind}: every event, and the uncommitted ones once more")
        second.stop()
    finally:
        first.stop()
        stand_in.stop()
    counts = Counter(vendor.accepted_ids())
    resent = {m for m, n in counts.items() if n > 1}
    print(f"{kind}: sigkill after the vendor's 2xx: sent={len(ids)} lost={len(set(ids) - set(counts))} "
          f"accepted before the kill={len(accepted_before)} resent={len(resent)}")
    figures.report("forwarder killed after the vendor's 2xx but before the offset commit (SIGKILL a forwarder)",
                   vendor=kind, sent=len(ids), lost=len(set(ids) - set(counts)),
                   accepted_before_kill=len(accepted_before), resent_same_key=len(resent))
    assert set(ids) <= set(counts)                      # nothing lost
    assert resent == accepted_before and max(counts.values()) == 2  # what was accepted, once more (same key)
    assert first.process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("kind", KINDS)
def test_an_event_the_vendor_refuses_is_dead_lettered_alone_and_the_others_delivered_once(bootstrap: str, kind: str,
                                                                                          figures: Figures) -> None:
    vendor = case(kind)
    topics = fresh_topics(bootstrap, partitions=1)
    payloads = _payloads(vendor, 12, "pf")
    spoiled = {3, 8}
    for i in spoiled:
        payloads[i] = {**vendor.stand_in.spoil(payloads[i]), "_messageId": payloads[i]["_messageId"]}
    ids = write_outbound(bootstrap, topics, kind, kind, payloads, partitions=1)
    runner = ForwarderThread(bootstrap, topics, integration(kind, kind, vendor.connection))
    try:
        dead = dead_letters(bootstrap, topics.dead_letters(kind), len(spoiled), timeout=60)
        wait_for(lambda: len(vendor.accepted_ids()) >= len(ids) - len(spoiled), timeout=60, what=f"{kind}: the rest")
    finally:
        runner.stop()
        vendor.stand_in.stop()
    assert sorted(d["messageId"] for d in dead) == sorted(ids[i] for i in spoiled)
    assert all(d["reason"].startswith("vendor.") and d["attempts"] <= 1 for d in dead), dead
    assert sorted(vendor.accepted_ids()) == sorted(m for i, m in enumerate(ids) if i not in spoiled)
    figures.report("vendor refuses one event of a batch", vendor=kind, sent=len(ids), delivered=len(ids) - len(dead),
                   dead_letters=Counter(d["reason"].split(":")[0] for d in dead))


@pytest.mark.parametrize("kind", KINDS)
def test_a_replayed_window_reaches_the_vendor_under_the_same_dedup_keys(bootstrap: str, kind: str) -> None:
    """A replay writes a window's events again under their messageIds: a vendor that deduplicates gets the
    same keys again (it drops every copy), and a vendor that does not is declared so (a replay is unsafe)."""
    vendor = case(kind)
    topics = fresh_topics(bootstrap, partitions=1)
    payloads = _payloads(vendor, 20, "rp")
    ids = write_outbound(bootstrap, topics, kind, kind, payloads, partitions=1)
    runner = ForwarderThread(bootstrap, topics, integration(kind, kind, vendor.connection))
    try:
        wait_for(lambda: len(vendor.accepted_ids()) >= len(ids), timeout=60, what=f"{kind}: the window")
        write_outbound(bootstrap, topics, kind, kind, payloads, partitions=1)  # the replay
        wait_for(lambda: len(vendor.accepted_ids()) >= 2 * len(ids), timeout=60, what=f"{kind}: the replay")
    finally:
        runner.stop()
        vendor.stand_in.stop()
    assert sorted(vendor.accepted_ids()) == sorted(ids * 2)
    if VENDORS[kind].dedup_key is not None:  # (the others count each copy: the replay dry run warns of them)
        assert len(vendor.stand_in.keys) == len(ids) and vendor.stand_in.duplicates == len(ids)
