"""The fault table's hostile inputs, end to end on the real broker and a real worker: oversized and
deep events refused at the SDK at once, unusual text arriving byte-identical (and NFC/NFD emails hashing
the same), skewed clocks corrected without a produce failure, a producer on a newer compatible schema
processed and an incompatible one dead-lettered, webhook targets that point inwards refused."""

from __future__ import annotations

import copy
import json
import time
import unicodedata
from pathlib import Path

import pytest
from confluent_kafka import Producer

from eventrouter.dev.standins import WebhookStandIn
from eventrouter.dev.standins.server import Answer, Incoming
from forwarders.vendors import vendor_for
from producers import Analytics
from schemas import AvroCodec, SchemaRegistryClient, load_schema
from schemas.envelope import to_record
from schemas.errors import ConfigurationError
from schemas.runtime.kafka import producer_settings
from schemas.validation import ValidationError
from tests.figures import Figures
from tests.integration.forwarder_helpers import ForwarderThread, integration, write_outbound
from tests.integration.kafka_helpers import deep_object, fresh_topics
from tests.integration.worker_helpers import WorkerProcess, dead_letters, outbound, send_events
from tests.unit.schemas.registry_standin import registry_standin

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CONFIG = """
pipelines: [{name: web, write_keys: [wk1], integrations: [hook, meta]}]
integrations:
  - name: hook
    kind: webhook
    connection: {url: "https://crm.example/hook"}
    playbook: {keep_event: true}
  - name: meta
    kind: meta_capi
    playbook: "starter:meta_capi"
    connection: {pixel_id: "1", access_token: "${META_TOKEN}"}
"""
TEXTS = {"emoji": "🎉 party", "zwj": "👩\u200d👩\u200d👧 family", "combining": "e\u0301te\u0301",
         "rtl": "\u202eevil\u202c.txt", "nul": "a\x00b", "cjk": "東京", "nfc_email": unicodedata.normalize(
             "NFC", "José@Example.com "), "nfd_email": unicodedata.normalize("NFD", "José@Example.com ")}


def test_oversized_and_deep_events_are_refused_at_the_call_at_once(bootstrap: str, figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    deep = deep_object(200)
    cases = {"33 KB event": {"blob": "x" * 33_000}, "1 MB event": {"blob": "x" * 1_000_000},
             "depth 200": deep, "10k properties": {f"k{i}": i for i in range(10_000)},
             "1 MB string": {"s": "y" * (1 << 20)}}
    analytics = Analytics("wk1", bootstrap, topic=topics.raw)
    seen: dict[str, str] = {}
    slowest = 0.0
    for name, properties in cases.items():
        started = time.monotonic()
        with pytest.raises(ValidationError) as caught:
            analytics.track("user-1", "Big", properties)
        slowest = max(slowest, time.monotonic() - started)
        seen[name] = caught.value.reason
        assert caught.value.reason.startswith("limit.") and str(caught.value)
    with pytest.raises(ValidationError) as lone:
        analytics.track("user-1", "Text", {"s": "lone \ud800"})
    assert analytics.stats()["queued"] == 0
    analytics.close()
    figures.report("33 KB event; 1 MB event; depth 200; 10k properties; 1 MB string", refused=len(seen),
                   reasons="/".join(sorted(set(seen.values()))), slowest_refusal_s=slowest, queued=0)
    figures.report("lone surrogate", refused_at_the_sdk=lone.value.reason)
    assert slowest < 1.0


def test_unusual_text_arrives_byte_identical_and_skewed_clocks_are_corrected(bootstrap: str, tmp_path: Path,
                                                                           figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(CONFIG)
    worker = WorkerProcess(bootstrap, topics, tmp_path, config=config)
    now = time.time()
    try:
        worker.wait_for_revision(1)
        with Analytics("wk1", bootstrap, topic=topics.raw) as analytics:
            for name, text in TEXTS.items():
                analytics.track("user-text", "Order Completed", {"text": text}, context={"traits": {"email": text}},
                                message_id=f"text-{name}")
            assert analytics.flush(30) == 0
            failed = analytics.stats()["failed"]
        # a client whose clock runs 2 h ahead (its sentAt too), and a backfill of an event 30 days old
        base = {"type": "track", "event": "Order Completed", "userId": "user-time", "writeKey": "wk1"}
        send_events(bootstrap, topics, [
            {**base, "messageId": "ahead", "originalTimestamp": _iso(now + 7200), "sentAt": _iso(now + 7200.1)},
            {**base, "messageId": "back", "originalTimestamp": _iso(now - 30 * 86_400), "sentAt": _iso(now)}])
        hook = {r["messageId"]: r for r in outbound(bootstrap, topics.integration("hook"), len(TEXTS) + 2, settle=1.0)}
        meta = {r["messageId"]: r for r in outbound(bootstrap, topics.integration("meta"), len(TEXTS) + 2)}
    finally:
        worker.stop()
    for name, text in TEXTS.items():
        payload = json.loads(hook[f"text-{name}"]["payload"])
        assert payload["properties"]["text"] == text, name  # byte-identical after Avro, JSON and the playbook
    em = {name: json.loads(meta[f"text-{name}"]["payload"])["user_data"]["em"] for name in ("nfc_email", "nfd_email")}
    assert em["nfc_email"] == em["nfd_email"], "NFC and NFD forms of one email hash the same"
    times = {m: json.loads(hook[m]["payload"])["timestamp"] for m in ("ahead", "back")}
    ahead_s = _epoch(times["ahead"]) - now
    back_days = (now - _epoch(times["back"])) / 86_400
    figures.report("emoji, ZWJ, combining marks, RTL override, NUL, NFC vs NFD email", texts=len(TEXTS),
                   byte_identical=len(TEXTS), nfc_nfd_same_hash=True)
    figures.report("originalTimestamp 2 h ahead / 30 days back; skewed sentAt", produce_failures=failed,
                   ahead_corrected_to_s=round(ahead_s, 1), back_kept_days=round(back_days, 1))
    assert failed == 0
    assert abs(ahead_s) < 120, "a client clock 2 h ahead: corrected by its sentAt (to about the received time)"
    assert 29.9 < back_days < 30.1, "30 days back: kept (a backfill), not moved"


def test_a_newer_compatible_schema_is_processed_and_an_incompatible_one_dead_lettered(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    topics = fresh_topics(bootstrap)
    config = tmp_path / "eventrouter.yaml"
    config.write_text(CONFIG)
    v2 = copy.deepcopy(load_schema("event"))
    v2["fields"].append({"name": "sessionId", "type": ["null", "string"], "default": None})
    v3 = copy.deepcopy(load_schema("event"))
    for field in v3["fields"]:
        if field["name"] == "userId":
            field["type"], _ = "long", field.pop("default", None)
    with registry_standin() as (url, _state):
        registry = SchemaRegistryClient(url)
        event = {"type": "track", "event": "Order Completed", "userId": "user-v2", "writeKey": "wk1",
                 "properties": {"revenue": 1.0}}
        newer = AvroCodec(v2, registry=registry).encode(to_record({**event, "messageId": "v2"}) | {"sessionId": "s"})
        wrong = AvroCodec(v3, registry=registry).encode(to_record({**event, "messageId": "v3"}) | {"userId": 7})
        producer = Producer(producer_settings(bootstrap))
        for value in (newer, wrong):
            producer.produce(topics.raw, value)
        assert producer.flush(30) == 0
        worker = WorkerProcess(bootstrap, topics, tmp_path, config=config, extra=("--schema-registry", url))
        try:
            worker.wait_for_revision(1)  # its integration topics exist from then on
            routed = outbound(bootstrap, topics.integration("hook"), 1, settle=1.0)
            letters = dead_letters(bootstrap, topics.invalid, 1, settle=1.0)
            alive = worker.process.poll() is None
        finally:
            worker.stop()
    figures.report("producer on schema v2 (new optional field) against a v1 worker; an incompatible v3",
                   v2_routed=len(routed), v3_dead_lettered=letters[0]["reason"] if letters else "-", worker_alive=alive)
    assert [r["messageId"] for r in routed] == ["v2"]
    assert [d["reason"] for d in letters] == ["decode.schema_mismatch"] and alive


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://10.0.0.8/hook",
                                 "http://[::1]:8080/hook", "http://localhost:9200/"])
def test_webhooks_pointing_inwards_are_refused_at_load(url: str, figures: Figures) -> None:
    with pytest.raises(ConfigurationError) as refused:
        vendor_for("webhook", {"url": url, "allow_http": True})
    figures.report("webhook URL pointing at an internal address", url=url, refused=str(refused.value)[:60])


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


def _epoch(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()



class Redirecting(WebhookStandIn):
    """Answers 302 to an internal address (a metadata service, say) instead of taking the event."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def answer(self, incoming: Incoming) -> Answer:
        return Answer(302, b"", {"Location": self.target})


def test_a_webhook_redirect_to_an_internal_port_is_not_followed(bootstrap: str, figures: Figures) -> None:
    internal = WebhookStandIn().start()  # what the redirect points at: it must never be reached
    hook = Redirecting(f"{internal.url}/admin").start()
    try:
        topics = fresh_topics(bootstrap)
        write_outbound(bootstrap, topics, "hook", "webhook", [{"n": i} for i in range(3)])
        spec = integration("hook", "webhook", {"url": f"{hook.url}/hook", "secret": "hook-secret",
                                               "allow_http": True, "allow_private": True})
        runner = ForwarderThread(bootstrap, topics, spec)
        try:
            letters = dead_letters(bootstrap, topics.dead_letters("hook"), 3, settle=0.5)
        finally:
            runner.stop()
    finally:
        hook.stop()
        internal.stop()
    figures.report("webhook URL pointing at an internal address", case="302 to an internal port",
                   followed=internal.requests, dead_letters={d["reason"]: len(letters) for d in letters})
    assert internal.requests == 0 and {d["reason"] for d in letters} == {"vendor.redirect"}
    assert {d["vendorStatus"] for d in letters} == {302}
