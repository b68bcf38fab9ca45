"""Forwarders as real processes under faults: SIGKILL between the vendor's 2xx and the commit loses
nothing (the batch is sent once more, under the same idempotency keys); one hung vendor does not
delay another; a SIGTERM drains."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from eventrouter.dev.standins import AmplitudeStandIn, MixpanelStandIn
from eventrouter.dev.standins.server import Answer, Incoming
from streams.metrics import scrape
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderProcess, wait_for, write_outbound
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.test_forwarders import amplitude_events

CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk], integrations: [amp, mp]}}
integrations:
  - name: amp
    kind: amplitude
    connection: {{api_key: "${{AMP_KEY}}", endpoint: "{amp}/2/httpapi", allow_http: true, allow_private: true}}
    delivery: {{linger_ms: 100, timeout_s: 30}}
    playbook: "starter:amplitude"
  - name: mp
    kind: mixpanel
    connection: {{project_id: "42", username: sa.user, secret: "${{MP_SECRET}}", endpoint: "{mp}/import",
                  allow_http: true, allow_private: true}}
    delivery: {{linger_ms: 100}}
    playbook: "starter:mixpanel"
"""
ENV = {"AMP_KEY": "amp-key", "MP_SECRET": "mp-secret"}


class KillAfterAccepting(AmplitudeStandIn):
    """Accepts a request, then SIGKILLs the forwarder before it can read the 2xx (let alone commit)."""

    def __init__(self) -> None:
        super().__init__()
        self.victim: int | None = None
        self.killed_after: int | None = None

    def answer(self, incoming: Incoming) -> Answer:
        answer = super().answer(incoming)
        if self.victim is not None and answer.status == 200:
            os.kill(self.victim, signal.SIGKILL)
            self.killed_after, self.victim = len(self.accepted), None
        return answer


def _config(folder: Path, amp: str, mp: str) -> Path:
    path = folder / "eventrouter.yaml"
    path.write_text(CONFIG.format(amp=amp, mp=mp))
    return path


def test_sigkill_between_the_vendors_2xx_and_the_commit_resends_with_the_same_keys(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    amplitude = KillAfterAccepting().start()
    mixpanel = MixpanelStandIn().start()
    topics = fresh_topics(bootstrap)
    config = _config(tmp_path, amplitude.url, mixpanel.url)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(6000))
    first = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env=ENV, tag="-1")
    amplitude.victim = first.pid
    second: ForwarderProcess | None = None
    try:
        first.process.wait(90)
        assert first.process.returncode == -signal.SIGKILL, first.log()
        accepted_before = len(amplitude.accepted)  # accepted by the vendor, never committed by the forwarder
        second = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env=ENV, tag="-2")
        wait_for(lambda: len(amplitude.accepted) >= len(ids) + accepted_before and set(ids) <= set(amplitude.keys),
                 timeout=90, what="every event, and the uncommitted ones once more")
        wait_for(lambda: scrape(second.port).get('eventrouter_forwarder_delivered_total{integration="amp"}', 0)
                 >= len(ids), timeout=30, what="the second forwarder's metrics")
        assert second.stop() == 0, second.log()
    finally:
        first.stop()
        if second is not None:
            second.stop()  # a no-op once stopped; else it would outlive the test
        amplitude.stop()
        mixpanel.stop()
    lost = len(set(ids) - set(amplitude.keys))
    resent = amplitude.duplicates
    print(f"sigkill between 2xx and commit: sent={len(ids)} lost={lost} accepted before the kill={accepted_before} "
          f"resent={resent} (same insert_id each time)")
    figures.report("forwarder killed after the vendor's 2xx but before the offset commit (SIGKILL a forwarder)",
                   sent=len(ids), lost=lost, accepted_before_kill=accepted_before, resent_same_key=resent)
    assert lost == 0
    assert resent == accepted_before > 0  # each accepted-but-uncommitted event once more, under its insert_id


def test_a_hung_vendor_does_not_delay_another(bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    amplitude = AmplitudeStandIn().start()
    mixpanel = MixpanelStandIn().start()
    amplitude.hang(100, 25.0)
    topics = fresh_topics(bootstrap)
    config = _config(tmp_path, amplitude.url, mixpanel.url)
    write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(1000))
    events = [{"event": "Viewed", "properties": {"time": 1_795_000_000_000 + i, "distinct_id": f"u{i % 5}"}}
              for i in range(1000)]
    write_outbound(bootstrap, topics, "mp", "mixpanel", events)
    amp = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env=ENV)
    mp = None
    try:
        wait_for(lambda: amplitude.requests >= 1, timeout=60, what="amplitude's forwarder to be stuck")
        mp = ForwarderProcess(bootstrap, topics, config, "mp", tmp_path, env=ENV)
        took = wait_for(lambda: len(mixpanel.accepted) >= 1000, timeout=60, what="mixpanel's 1000 events")
        assert not amplitude.accepted
        print(f"isolation: mixpanel delivered 1000 in {took:.1f} s while amplitude hung "
              f"({amplitude.requests} requests without an answer)")
        figures.report("one integration down", other_delivered=1000, other_took_s=took, lost=0)
    finally:
        amplitude.clear()
        if mp is not None:
            mp.stop()
        amp.stop(signal.SIGKILL)
        amplitude.stop()
        mixpanel.stop()
    assert mixpanel.duplicates == 0


def test_sigterm_drains_the_batches_under_way_and_the_next_forwarder_sends_the_rest_once(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    amplitude = AmplitudeStandIn().start()
    mixpanel = MixpanelStandIn().start()
    amplitude.delay = 0.3  # a slow vendor: batches are under way when SIGTERM comes
    topics = fresh_topics(bootstrap)
    config = _config(tmp_path, amplitude.url, mixpanel.url)
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", amplitude_events(20_000))
    first = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env=ENV, tag="-1")
    try:
        wait_for(lambda: len(amplitude.accepted) >= 4000, timeout=60, what="the first batches")
        assert first.stop() == 0, first.log()  # SIGTERM
        delivered_first = len(amplitude.accepted)
        second = ForwarderProcess(bootstrap, topics, config, "amp", tmp_path, env=ENV, tag="-2")
        wait_for(lambda: set(ids) <= set(amplitude.keys), timeout=90, what="every event")
        second.stop()
    finally:
        first.stop()
        amplitude.stop()
        mixpanel.stop()
    print(f"sigterm mid-backlog: sent={len(ids)} delivered before the stop={delivered_first} "
          f"lost={len(set(ids) - set(amplitude.keys))} duplicates={amplitude.duplicates}")
    figures.report("SIGTERM a forwarder mid-load", sent=len(ids), delivered_before_stop=delivered_first,
                   lost=len(set(ids) - set(amplitude.keys)), duplicates=amplitude.duplicates)
    assert set(ids) <= set(amplitude.keys) and amplitude.duplicates == 0


def test_without_a_file_the_forwarder_takes_its_integration_from_the_config_topic(bootstrap: str,
                                                                                tmp_path: Path) -> None:
    from schemas.runtime.revisions import ConfigStore

    amplitude = AmplitudeStandIn().start()
    mixpanel = MixpanelStandIn().start()
    topics = fresh_topics(bootstrap)
    revision, _ = ConfigStore(bootstrap, topics).apply(_config(tmp_path, amplitude.url, mixpanel.url))
    ids = write_outbound(bootstrap, topics, "mp", "mixpanel", [
        {"event": "Viewed", "properties": {"time": 1_795_000_000_000 + i, "distinct_id": f"u{i % 5}"}}
        for i in range(100)])
    forwarder = ForwarderProcess(bootstrap, topics, None, "mp", tmp_path, env=ENV)
    try:
        wait_for(lambda: len(mixpanel.accepted) >= 100, timeout=60, what="100 events")
    finally:
        assert forwarder.stop() == 0, forwarder.log()
        amplitude.stop()
        mixpanel.stop()
    assert revision.number == 1 and f"config revision {revision.number}" in forwarder.log()
    assert sorted(e["properties"]["$insert_id"] for e in mixpanel.accepted) == sorted(ids)
