"""One broker of the three-node cluster SIGKILLed under load, with the whole pipeline running: the SDK's
producer, the stream worker and a forwarder fail over to the other brokers, and every event the SDK
had acknowledged reaches the vendor (sets of messageIds, not counts)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest

from eventrouter.dev.localkafka import LocalKafka
from eventrouter.dev.standins import AmplitudeStandIn
from producers import Analytics
from schemas import Topics
from schemas.runtime.kafka import ensure_topics
from tests.figures import Figures
from tests.integration.forwarder_helpers import wait_for
from tests.integration.stack_helpers import amplitude_stack, wait_until_assigned

pytestmark = [pytest.mark.kafka, pytest.mark.cluster, pytest.mark.slow]


def test_losing_one_broker_of_three_under_load_loses_nothing_acknowledged(kafka_cluster: LocalKafka, tmp_path: Path,
                                                                          figures: Figures) -> None:
    bootstrap = kafka_cluster.status().bootstrap
    assert bootstrap is not None
    amplitude = AmplitudeStandIn().start()
    topics = Topics(f"b{uuid.uuid4().hex[:8]}")
    ensure_topics(bootstrap, [topics.raw, topics.invalid], partitions=3)
    stack = amplitude_stack(bootstrap, topics, tmp_path, amplitude)
    failed: set[str] = set()
    sent: list[str] = []
    total = 8000
    analytics = Analytics("wk1", bootstrap, topic=topics.raw,
                          on_error=lambda _e, batch: failed.update(m["messageId"] for m in batch))

    def load() -> None:  # ~800 events/s for ~10 s
        started = time.monotonic()
        for i in range(total):
            _ok, message = analytics.track(f"user-{i % 40}", "Order Completed", {"i": i}, message_id=f"loss-{i}")
            sent.append(message["messageId"])
            if i % 80 == 79:
                time.sleep(max(0.0, started + (i + 1) / 800 - time.monotonic()))

    sender = threading.Thread(target=load, daemon=True)
    killed_at = restarted_at = 0.0
    try:
        wait_until_assigned(stack)  # both in their groups before the load starts
        sender.start()
        wait_for(lambda: len(amplitude.keys) >= 1000, timeout=90, what="delivery under way")
        kafka_cluster.stop_node(1, kill=True)  # SIGKILL by PID; node 1 is also in the bootstrap list
        killed_at = time.monotonic()
        time.sleep(6.0)
        kafka_cluster.restart_node(1)
        restarted_at = time.monotonic()
        sender.join(120)
        assert analytics.flush(120) == 0
        acked = set(sent) - failed
        wait_for(lambda: acked <= set(amplitude.keys), timeout=180, what="every acknowledged event at the vendor")
        recovered = time.monotonic() - restarted_at
        assert not stack.exited(), stack.exited()
    finally:
        analytics.close()
        stack.stop()
        amplitude.stop()
    lost = acked - set(amplitude.keys)
    figures.report("one broker of three killed under load (SDK, worker, forwarder)", sent=len(sent),
                   acked=len(acked), reported_failed=len(failed), lost=len(lost), duplicates=amplitude.duplicates,
                   broker_down_s=restarted_at - killed_at, recovery_s=recovered)
    assert not lost
    assert set(sent) == acked | failed  # whatever was not acknowledged was reported to the caller
