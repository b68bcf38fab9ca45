"""The broker frozen (SIGSTOP) for 15 s and then 60 s under `eventrouter up`, with events sent before,
during and after each stall through the SDK and the gateway: the supervisor says "broker unreachable"
and carries on, no process stops, and every event the SDK or the gateway acknowledged reaches the
vendor (sets of messageIds). Runs on a broker of its own, so freezing it disturbs no other test."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from eventrouter.dev.localkafka import LocalKafka
from eventrouter.dev.standins import AmplitudeStandIn
from eventrouter.progress import read_snapshot
from eventrouter.stack import Stack
from eventrouter.supervise import run_up
from producers import Analytics
from schemas import Topics
from schemas.runtime.kafka import ensure_topics
from tests.conftest import _start
from tests.figures import Figures
from tests.integration.forwarder_helpers import wait_for
from tests.integration.stack_helpers import amplitude_stack, wait_until_assigned

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = _start(Path(tmp_path_factory.mktemp("kafka-frozen")), nodes=1)
    yield kafka
    kafka.stop()


class Load:
    """Events through the SDK and the gateway, and which of them were acknowledged."""

    def __init__(self, bootstrap: str, topics: Topics, gateway_port: int | None) -> None:
        self.failed: set[str] = set()
        self.sdk_sent: list[str] = []
        self.gateway_acked: list[str] = []
        self.gateway_refused = 0
        self.url = f"http://127.0.0.1:{gateway_port}/v1/batch"
        self.analytics = Analytics("wk1", bootstrap, topic=topics.raw,
                                   on_error=lambda _e, batch: self.failed.update(m["messageId"] for m in batch))

    def sdk(self, tag: str, count: int = 100) -> None:
        for i in range(count):
            _ok, message = self.analytics.track(f"user-{i % 20}", "Order Completed", {"i": i},
                                                message_id=f"{tag}-sdk-{i}")
            self.sdk_sent.append(message["messageId"])

    def gateway(self, tag: str, batches: int = 2) -> None:
        for b in range(batches):
            batch = [{"type": "track", "event": "Order Completed", "userId": f"user-{i % 20}",
                      "messageId": f"{tag}-gw-{b}-{i}", "properties": {"i": i}} for i in range(50)]
            try:
                reply = requests.post(self.url, json={"batch": batch}, auth=("wk1", ""), timeout=60)
            except requests.RequestException:
                self.gateway_refused += len(batch)
                continue
            if reply.status_code == 200:
                self.gateway_acked += [e["messageId"] for e in batch]
            else:  # 503 + Retry-After while Kafka does not acknowledge: the caller sends again later
                self.gateway_refused += len(batch)

    def acked(self) -> set[str]:
        return (set(self.sdk_sent) - self.failed) | set(self.gateway_acked)


def _freeze(kafka: LocalKafka, seconds: float, stack: Stack, load: Load, *, tag: str, seen: dict[str, Any]) -> None:
    """SIGSTOP the broker by PID for `seconds`, sending events while it is frozen; SIGCONT even on failure."""
    pid = kafka.status().nodes[0].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        time.sleep(1.0)
        load.sdk(f"{tag}-during")  # buffered by the SDK's producer until the broker is back
        load.gateway(f"{tag}-during", batches=1)  # the gateway answers 503 after its ack timeout (5 s)
        wait_for(lambda: _down(stack), timeout=max(5.0, seconds - (time.monotonic() - stopped) - 1),
                 what="up to say the broker is unreachable")
        seen.setdefault("said_down", []).append(tag)
        time.sleep(max(0.0, seconds - (time.monotonic() - stopped)))
    finally:
        os.kill(pid, signal.SIGCONT)
    seen.setdefault("frozen_s", []).append(round(time.monotonic() - stopped, 1))


def _down(stack: Stack) -> bool:
    snapshot = read_snapshot(stack.folder, stack.topics.prefix)
    return snapshot is not None and snapshot.progress.broker_down_since is not None


def test_broker_frozen_15s_and_60s_under_up_stops_nothing_and_loses_nothing_acknowledged(
        own_broker: LocalKafka, tmp_path: Path, capsys: pytest.CaptureFixture[str], figures: Figures) -> None:
    bootstrap = own_broker.status().bootstrap
    assert bootstrap is not None
    amplitude = AmplitudeStandIn().start()
    topics = Topics(f"f{uuid.uuid4().hex[:8]}")
    ensure_topics(bootstrap, [topics.raw, topics.invalid], partitions=3)
    stack = amplitude_stack(bootstrap, topics, tmp_path, amplitude, gateway=True)
    load = Load(bootstrap, topics, stack.gateway_port)
    done, seen = threading.Event(), {}

    def drive() -> None:
        try:
            wait_until_assigned(stack)
            wait_for(lambda: requests.get(load.url.replace("/v1/batch", "/health"), timeout=2).ok, timeout=60,
                     what="the gateway")
            for stall, tag in ((15.0, "s15"), (60.0, "s60")):
                load.sdk(f"{tag}-before")
                load.gateway(f"{tag}-before")
                assert load.analytics.flush(60) == 0
                wait_for(lambda: load.acked() <= set(amplitude.keys), timeout=120, what=f"{tag}: before, delivered")
                _freeze(own_broker, stall, stack, load, tag=tag, seen=seen)
                recovered = time.monotonic()
                load.sdk(f"{tag}-after")
                load.gateway(f"{tag}-after")
                assert load.analytics.flush(150) == 0
                wait_for(lambda: load.acked() <= set(amplitude.keys), timeout=240,
                         what=f"{tag}: every acknowledged event at the vendor")
                seen.setdefault("recovery_s", []).append(round(time.monotonic() - recovered, 1))
                # up's own check of the broker (every second, 3 s at most each) may take a while longer to pass
                # than delivery; the next stall starts once up has seen the broker back
                wait_for(lambda: not _down(stack), timeout=60, what=f"{tag}: up to see the broker again")
            seen["alive"] = {c.role: c.process.poll() is None for c in stack.children}
        except BaseException as exc:  # noqa: BLE001 - raised again by the test, in its own thread
            seen["error"] = exc
        finally:
            done.set()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    try:
        code = run_up(stack, every_s=1.0, until=done.is_set, start=False)
    finally:
        driver.join(30)
        load.analytics.close()
        amplitude.stop()
    out = capsys.readouterr()
    if "error" in seen:
        raise AssertionError(out.out[-4000:] + out.err[-4000:]) from seen["error"]
    acked = load.acked()
    lost = acked - set(amplitude.keys)
    figures.report("broker frozen (SIGSTOP) 15 s and 60 s under `up`", acked=len(acked), lost=len(lost),
                   sdk_failed=len(load.failed), gateway_refused=load.gateway_refused,
                   duplicates=amplitude.duplicates, frozen_s=seen["frozen_s"], recovery_s=seen["recovery_s"],
                   restarts=sum(stack.restarts.values()))
    assert not lost
    assert code == 0 and seen["said_down"] == ["s15", "s60"]
    assert all(seen["alive"].values()) and stack.restarts == {}, (seen, stack.restarts, out.err[-3000:])
    assert re.search(r"^broker unreachable since \d\d:\d\d:\d\d \(\d+ s\)  \|  produced ", out.out, re.M), out.out
    assert len(re.findall(r"broker reachable again after \d+ s", out.err)) == 2, out.err[-3000:]
