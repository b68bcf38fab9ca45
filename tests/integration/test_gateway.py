"""The HTTP gateway as a real process on a real broker, driven by Segment's own analytics-python."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from schemas import EventCodec, Topics, deadletter_codec
from tests.integration.kafka_helpers import consume_all, fresh_topics

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_gateway(bootstrap: str, topics: Topics, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "eventrouter", "gateway", "--bootstrap-servers", bootstrap,
                             "--topic-prefix", topics.prefix, "--write-key", "wk_gateway", "--port", str(port),
                             *extra], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"{url}/health", timeout=1)
            return proc, url
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(30)


@pytest.fixture(scope="module")
def gateway(bootstrap: str) -> Iterator[tuple[str, Topics]]:
    topics = fresh_topics(bootstrap)
    proc, url = _start_gateway(bootstrap, topics)
    yield url, topics
    _stop(proc)


def test_segment_analytics_python_delivers_through_the_gateway(bootstrap: str, gateway: tuple[str, Topics]) -> None:
    from segment.analytics.client import Client  # Segment's own library, installed from PyPI

    url, topics = gateway
    failures: list[Any] = []
    client = Client("wk_gateway", host=url, on_error=lambda e, batch: failures.append((e, len(batch))), gzip=True,
                    upload_size=100)
    sent = []
    for i in range(300):
        sent.append(client.track(f"user-{i % 10}", "Segment Lib Event", {"i": i, "price": 1.5})[1])
    sent.append(client.identify("user-1", {"email": "a@example.com"})[1])
    sent.append(client.page("user-1", "Docs", "Intro", {"path": "/intro"})[1])
    sent.append(client.screen("user-1", "App", "Home")[1])
    sent.append(client.group("user-1", "acme", {"name": "Acme"})[1])
    sent.append(client.alias("anon-1", "user-1")[1])
    client.flush()
    client.join()
    assert failures == []
    codec = EventCodec()
    received = {m["messageId"]: m for m in (codec.decode(r.value()) for r in consume_all(bootstrap, topics.raw, 305))}
    assert received.keys() == {m["messageId"] for m in sent}
    for original in sent:
        event = received[original["messageId"]]
        assert event["type"] == original["type"]
        assert event["writeKey"] == "wk_gateway"
        assert event["receivedAt"] and event["sentAt"]
        assert event["timestamp"] == original["timestamp"]  # analytics-python's authoritative timestamp
        for field in ("userId", "event", "properties", "traits", "groupId", "previousId", "name", "category"):
            assert event.get(field) == original.get(field), field
        assert event["context"]["library"]["name"] == "analytics-python"


def test_batch_with_invalid_events_reports_and_dead_letters_them(bootstrap: str,
                                                                 gateway: tuple[str, Topics]) -> None:
    url, topics = gateway
    body = {"batch": [{"type": "track", "userId": "u", "event": "Good", "messageId": "good-1"},
                      {"type": "track", "userId": "u", "messageId": "bad-1"},
                      {"type": "identify", "messageId": "bad-2", "traits": {}},
                      {"type": "page", "anonymousId": "a", "messageId": "good-2"}]}
    reply = requests.post(f"{url}/v1/batch", data=gzip.compress(orjson.dumps(body)), auth=("wk_gateway", ""),
                          headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["accepted"] == 2
    assert [(r["index"], r["messageId"], r["reason"]) for r in answer["rejected"]] == [
        (1, "bad-1", "invalid.missing_field"), (2, "bad-2", "invalid.identity")]
    letters = [deadletter_codec().decode(m.value()) for m in consume_all(bootstrap, topics.invalid, 2)]
    assert {(d["messageId"], d["reason"], d["stage"]) for d in letters} == {
        ("bad-1", "invalid.missing_field", "gateway"), ("bad-2", "invalid.identity", "gateway")}
    assert all(b"wk_gateway" not in d["originalBytes"] for d in letters)
    assert orjson.loads(next(d for d in letters if d["messageId"] == "bad-1")["originalBytes"])["userId"] == "u"


@pytest.mark.parametrize(("path", "kwargs", "status", "code"), [
    ("/v1/track", {"json": {"userId": "u", "event": "E"}, "auth": ("nope", "")}, 401, "auth"),
    ("/v1/track", {"json": {"userId": "u", "event": "E"}}, 401, "auth"),
    ("/v1/track", {"data": b"{not json", "auth": ("wk_gateway", "")}, 400, "bad_json"),
    ("/v1/track", {"json": {"userId": "u", "event": "E", "properties": {"s": "x" * 33_000}},
                   "auth": ("wk_gateway", "")}, 400, "too_large"),
    ("/v1/batch", {"data": gzip.compress(b"[" * 20_000_000), "headers": {"Content-Encoding": "gzip"},
                   "auth": ("wk_gateway", "")}, 400, "too_large"),
    ("/v1/track", {"json": {"userId": "u"}, "auth": ("wk_gateway", "")}, 400, "invalid.missing_field"),
    ("/v1/nothing", {"json": {}, "auth": ("wk_gateway", "")}, 404, "not_found"),
])
def test_bad_requests_get_a_status_and_a_json_reason(gateway: tuple[str, Topics], path: str, kwargs: dict[str, Any],
                                                     status: int, code: str) -> None:
    url, _topics = gateway
    reply = requests.post(url + path, timeout=30, **kwargs)
    assert (reply.status_code, reply.json()["code"]) == (status, code)
    assert "nope" not in reply.text


def test_health_and_single_event_endpoints(bootstrap: str, gateway: tuple[str, Topics]) -> None:
    url, topics = gateway
    assert requests.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
    calls = [("track", {"event": "E"}), ("identify", {}), ("page", {}), ("screen", {}), ("group", {"groupId": "g"}),
             ("alias", {"previousId": "p"})]
    for call, body in calls:
        payload = {**body, "userId": "s", "writeKey": "wk_gateway", "messageId": f"single-{call}"}
        reply = requests.post(f"{url}/v1/{call}", json=payload, timeout=30)
        assert reply.json() == {"success": True}
    got = {EventCodec().decode(m.value())["messageId"] for m in consume_all(bootstrap, topics.raw, 0, settle=2)}
    assert {f"single-{c}" for c in ("track", "identify", "page", "screen", "group", "alias")} <= got


def test_no_200_before_kafka_acknowledges(tmp_path: Path) -> None:
    """With no broker reachable the gateway answers 503 with Retry-After, never 200."""
    proc, url = _start_gateway("127.0.0.1:9", Topics("nobroker"), "--ack-timeout", "1")
    try:
        reply = requests.post(f"{url}/v1/track", json={"userId": "u", "event": "E"}, auth=("wk_gateway", ""),
                              timeout=30)
        assert reply.status_code == 503
        assert reply.headers["Retry-After"] == "5"
        assert reply.json()["code"] == "kafka_unavailable"
    finally:  # SIGTERM would wait out the delivery timeout for the unacknowledged event; nothing to keep here
        proc.kill()
        proc.wait(30)


def test_with_follow_config_a_write_key_applied_while_running_is_accepted(bootstrap: str, tmp_path: Path) -> None:
    from schemas.runtime.revisions import ConfigStore

    topics = fresh_topics(bootstrap)
    store = ConfigStore(bootstrap, topics)
    config = tmp_path / "eventrouter.yaml"
    config.write_text("pipelines: [{name: web, write_keys: [wk_first]}]")
    store.apply(config)
    proc, url = _start_gateway(bootstrap, topics, "--follow-config")
    event = {"userId": "u1", "event": "Signed Up"}
    try:
        deadline = time.monotonic() + 30
        while requests.post(f"{url}/v1/track", json=event, auth=("wk_first", ""), timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the first revision's writeKey was never accepted"
            time.sleep(0.2)
        assert requests.post(f"{url}/v1/track", json=event, auth=("wk_second", ""), timeout=10).status_code == 401
        config.write_text("pipelines: [{name: web, write_keys: [wk_second]}]")
        store.apply(config)
        deadline = time.monotonic() + 30
        while requests.post(f"{url}/v1/track", json=event, auth=("wk_second", ""), timeout=10).status_code != 200:
            assert time.monotonic() < deadline, "the new writeKey was never accepted"
            time.sleep(0.2)
        assert requests.post(f"{url}/v1/track", json=event, auth=("wk_first", ""), timeout=10).status_code == 401
        assert requests.post(f"{url}/v1/track", json=event, auth=("wk_gateway", ""), timeout=10).status_code == 200
    finally:
        _stop(proc)
