"""The console against the real broker: its store follows the config and audit topics (a revision applied
by `config apply` appears; one saved in the console is a revision the workers take up, applied by the
console's user), two consoles see each other's writes, and the audit topic is append-only."""

from __future__ import annotations

import asyncio
import html
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from eventrouter.console.app import make_app
from eventrouter.console.audit import record
from eventrouter.console.auth import EDITOR, Sessions
from eventrouter.console.store import KafkaStore
from eventrouter.console.users import add_user
from eventrouter.console.web import Console
from schemas import Topics
from schemas.runtime.revisions import ConfigStore

pytestmark = pytest.mark.kafka
EXAMPLE = Path(__file__).parents[2] / "examples" / "eventrouter.yaml"
PASSWORD = "a long enough password"


def _amplitude(bootstrap: str, folder: Path, delivery: str) -> tuple[Topics, Any, Any]:
    """Topics of a test's own, an Amplitude stand-in, and a config whose `amp` integration delivers to it
    (its key from $AMP_KEY, its delivery settings `delivery`) applied as revision 1."""
    from eventrouter.dev.standins import AmplitudeStandIn

    topics = Topics(f"c{uuid.uuid4().hex[:8]}")
    stand_in = AmplitudeStandIn().start()
    config = folder / "eventrouter.yaml"
    config.write_text(f"""
pipelines:
  - {{name: web, write_keys: [wk1], integrations: [amp]}}
integrations:
  - name: amp
    kind: amplitude
    connection: {{api_key: "${{AMP_KEY}}", endpoint: "{stand_in.url}/2/httpapi", allow_http: true, allow_private: true}}
    delivery: {{{delivery}}}
    playbook: "starter:amplitude"
""")
    revision, _ = ConfigStore(bootstrap, topics).apply(config)
    return topics, stand_in, revision


async def _login(client: TestClient, name: str) -> str:
    """Logged in as `name`; the session's CSRF token."""
    page = await (await client.post("/login", data={"name": name, "password": PASSWORD})).text()
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert token, page
    return token[1]


def _until(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_playbook_saved_in_the_console_is_a_revision_every_console_and_worker_reads(
        bootstrap: str, tmp_path: Path) -> None:
    topics = Topics(f"c{uuid.uuid4().hex[:8]}")
    applied, _ = ConfigStore(bootstrap, topics).apply(EXAMPLE)
    users = tmp_path / "users.json"
    add_user(users, "ed", EDITOR, PASSWORD)
    one, two = KafkaStore(bootstrap, topics).start(), KafkaStore(bootstrap, topics).start()
    try:
        _until(lambda: [r.number for r in one.history()] == [applied.number])
        console = Console(one, users, Sessions(b"k" * 32), environ={})

        async def main() -> None:
            async with TestClient(TestServer(make_app(console))) as client:
                reply = await client.post("/login", data={"name": "ed", "password": PASSWORD})
                page = await reply.text()
                token = re.search(r'name="csrf-token" content="([^"]+)"', page)
                assert token, page
                page = await (await client.get("/integrations/amplitude")).text()
                shaped = yaml.safe_load(html.unescape(
                    re.search(r'<textarea id="playbook"[^>]*>([^<]*)</textarea>', page)[1]))  # type: ignore[index]
                shaped["filter"] = {"deny": {"event": ["Debug *"]}}
                saved = await client.post("/integrations/amplitude/playbook", allow_redirects=False,
                                          data={"csrf": token[1], "playbook": yaml.safe_dump(shaped),
                                                "message": "no debug events"})
                assert saved.status == 303, await saved.text()
        asyncio.run(main())

        history = ConfigStore(bootstrap, topics).history()  # as `config history` and the workers read it
        assert [r.number for r in history] == [applied.number, applied.number + 1]
        newest = history[-1]
        assert newest.applied_by == "ed" and newest.source == "console: amplitude: no debug events"
        amplitude = next(i for i in newest.document["integrations"] if i["name"] == "amplitude")
        assert amplitude["playbook"]["filter"] == {"deny": {"event": ["Debug *"]}}
        newest.config()  # valid as the workers will read it
        _until(lambda: len(two.history()) == 2)  # the other console saw it
        two.append(record("ana", "user", "user ana", "ana made editor"))
        _until(lambda: [r.who for r in one.audit()] == ["ana"])
    finally:
        one.stop()
        two.stop()


def test_the_live_event_is_the_newest_of_the_pipelines_write_keys_from_the_raw_topic(bootstrap: str) -> None:
    from producers import Analytics
    from schemas.runtime.kafka import ensure_topics

    topics = Topics(f"c{uuid.uuid4().hex[:8]}")
    store = KafkaStore(bootstrap, topics)
    assert store.recent_events({"wk_live_123"}, 1) == []  # no raw topic yet: nothing was sent
    ensure_topics(bootstrap, [topics.raw], partitions=3)
    with Analytics("wk_live_123", bootstrap, topic=topics.raw) as ours, \
            Analytics("wk_someone_else", bootstrap, topic=topics.raw) as theirs:
        ours.identify("u-1", {"email": "old@example.com"})
        ours.flush()
        time.sleep(0.05)
        ours.identify("u-2", {"plan": "pro"})
        ours.flush()
        theirs.track("u-3", "Not Ours")
    found = store.recent_events({"wk_live_123"}, 1)
    assert [e.event["userId"] for e in found] == ["u-2"] and "writeKey" not in found[0].event
    assert [e.event["userId"] for e in store.recent_events({"wk_live_123"}, 5)] == ["u-2", "u-1"]


def test_a_user_changed_from_the_command_line_is_in_the_audit_log(bootstrap: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    topics = Topics(f"c{uuid.uuid4().hex[:8]}")
    users = tmp_path / "users.json"
    script = Path(sys.executable).parent / "eventrouter"
    common = ["--users", str(users), "--topic-prefix", topics.prefix]
    made = subprocess.run([str(script), "console-user", "nina", "--role", "viewer", "--bootstrap-servers",
                           bootstrap, *common], input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    store = KafkaStore(bootstrap, topics).start()
    try:
        _until(lambda: [r.summary for r in store.audit()] == ["nina: made, role viewer (eventrouter console-user)"])
        assert PASSWORD not in store.audit()[0].encode().decode() and "@" in store.audit()[0].who
    finally:
        store.stop()
    lost = subprocess.run([str(script), "console-user", "nina", "--role", "editor", "--bootstrap-servers",
                           "127.0.0.1:1", *common], input=PASSWORD + "\n", capture_output=True, text=True,
                          timeout=90)
    assert lost.returncode == 1 and "the audit log could not be written" in lost.stderr, lost.stderr
    assert "Traceback" not in lost.stderr and '"editor"' in users.read_text()


def test_dead_letters_are_counted_shown_masked_and_sent_again_once_after_the_fix(
        bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventrouter.console.auth import ADMIN, VIEWER
    from eventrouter.console.delivery import KafkaDelivery
    from eventrouter.console.letters import KafkaLetters
    from forwarders.app import find_integration
    from tests.integration.forwarder_helpers import ForwarderThread, wait_for, write_outbound
    from tests.integration.worker_helpers import dead_letters

    topics, stand_in, revision = _amplitude(bootstrap, tmp_path, "linger_ms: 50, min_backoff_s: 0.2, batch_size: 50, "
                                            "max_attempts: 1, max_retry_window_s: 0")
    monkeypatch.setenv("AMP_KEY", "a-wrong-key")
    events = [{"event_type": "Order Completed", "user_id": f"user-{i}", "user_properties": {"email": "ana@example.com"}}
              for i in range(20)]
    ids = write_outbound(bootstrap, topics, "amp", "amplitude", events, prefix="dl")
    runner = ForwarderThread(bootstrap, topics, find_integration(revision.config(), "amp"))
    try:
        dead_letters(bootstrap, topics.dead_letters("amp"), 20, settle=0.5)
    finally:
        runner.stop()
    users = tmp_path / "users.json"
    add_user(users, "ada", ADMIN, PASSWORD)
    add_user(users, "vera", VIEWER, PASSWORD)
    store = KafkaStore(bootstrap, topics).start()
    console = Console(store, users, Sessions(b"k" * 32), environ={}, letters=KafkaLetters(bootstrap, topics),
                      delivery=KafkaDelivery(bootstrap, topics))
    _until(lambda: len(store.history()) == 1)

    async def main() -> None:
        async with TestClient(TestServer(make_app(console))) as client:
            token = await _login(client, "vera")
            assert re.search(r'id="letters-amp">\s*<td>.*</td>\s*<td>20</td>', await (
                await client.get("/deadletters")).text())
            listed = html.unescape(await (await client.get("/deadletters/amp")).text())
            assert "vendor.rejected" in listed and "a-wrong-key" not in listed and "Re-inject" not in listed
            at = re.search(r'href="/deadletters/amp/(\d+)/(\d+)"', listed)
            assert at
            one = html.unescape(await (await client.get(f"/deadletters/amp/{at[1]}/{at[2]}")).text())
            assert '"reason": "vendor.rejected"' in one and '"event_type": "Order Completed"' in one
            assert "ana@example.com" not in one and "a-wrong-key" not in one  # a viewer: masked; never a secret
            detail = html.unescape(await (await client.get("/integrations/amp/delivery")).text())
            classes = detail.split('id="errors"')[1].split("</table>")[0]
            assert "vendor.rejected" in classes and "<td>20</td>" in classes, classes  # 20 events, one class
            requests = detail.split('id="requests"')[1].split("</table>")[0]
            assert "<td>400</td>" in requests and "Invalid API key: ***" in requests and "a-wrong-key" not in detail
            refused = await client.post("/deadletters/amp/reinject", data={"csrf": token, "reason": ""})
            assert refused.status == 403
            await client.post("/logout", data={"csrf": token})

            token = await _login(client, "ada")
            assert "ana@example.com" in await (await client.get(f"/deadletters/amp/{at[1]}/{at[2]}")).text()
            dry = html.unescape(await (await client.post("/deadletters/amp/reinject", data={
                "csrf": token, "reason": "vendor.rejected", "dry_run": "1"})).text())
            assert "Dry run (nothing written)" in dry and "re-injected into amp: 20" in dry, dry
            ticked = re.findall(r'name="pick" value="(\d+:\d+)"', listed_as_admin := html.unescape(
                await (await client.get("/deadletters/amp")).text()))
            assert len(ticked) == 20 and 'id="reinject-picked"' in listed_as_admin
            two = html.unescape(await (await client.post("/deadletters/amp/reinject", data=[
                ("csrf", token), ("reason", ""), ("dry_run", "1"), ("pick", ticked[0]), ("pick", ticked[5])])).text())
            assert "dead letters chosen: 2" in two and "(2 picked)" in two, two
            monkeypatch.setenv("AMP_KEY", "amp-key")  # the fix
            fixed = ForwarderThread(bootstrap, topics, find_integration(revision.config(), "amp"))
            try:
                sent = html.unescape(await (await client.post("/deadletters/amp/reinject", data={
                    "csrf": token, "reason": ""})).text())
                assert "Re-injected: amp's dead letters" in sent and "re-injected into amp: 20" in sent, sent
                await asyncio.to_thread(wait_for, lambda: len(stand_in.accepted) >= 20, what="all 20 delivered")
                again = html.unescape(await (await client.post("/deadletters/amp/reinject", data={
                    "csrf": token, "reason": ""})).text())
                assert "skipped, re-injected before: 20" in again and "re-injected into" not in again, again
            finally:
                fixed.stop()
            audit = html.unescape(await (await client.get("/audit")).text())
            assert audit.count("dead letters of amp") == 2 and "re-injected under revision 1" in audit

    try:
        asyncio.run(main())
    finally:
        store.stop()
        stand_in.stop()
    assert set(stand_in.keys) == set(ids) and stand_in.duplicates == 0, "every event delivered exactly once"


def test_live_views_stream_events_as_they_come_and_their_outcomes_masked_for_a_viewer(
        bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import orjson

    from eventrouter.console.auth import VIEWER
    from eventrouter.console.tail import LiveHub
    from forwarders.app import find_integration
    from schemas.runtime.kafka import ensure_topics
    from tests.integration.forwarder_helpers import ForwarderThread, write_outbound
    from tests.integration.worker_helpers import send_events

    topics, stand_in, revision = _amplitude(bootstrap, tmp_path,
                                            "linger_ms: 20, batch_size: 50, max_attempts: 1, max_retry_window_s: 0")
    monkeypatch.setenv("AMP_KEY", "amp-key")
    ensure_topics(bootstrap, [topics.raw, topics.receipts, topics.integration("amp")])
    users = tmp_path / "users.json"
    add_user(users, "vera", VIEWER, PASSWORD)
    store = KafkaStore(bootstrap, topics).start()
    hub = LiveHub(bootstrap, topics, pipelines=lambda: {"wk1": "web"})
    console = Console(store, users, Sessions(b"k" * 32), environ={}, hub=hub)
    _until(lambda: len(store.history()) == 1)
    runner = ForwarderThread(bootstrap, topics, find_integration(revision.config(), "amp"))

    Got = dict[str, list[dict[str, object]]]

    async def messages(reply: object, wanted: dict[str, int], timeout: float = 30) -> Got:
        """Read server-sent events until `wanted` (kind -> count) came."""
        got: Got = {}
        kind = ""
        deadline = time.monotonic() + timeout
        while any(len(got.get(k, [])) < n for k, n in wanted.items()):
            assert time.monotonic() < deadline, f"timed out with {got}"
            line = (await asyncio.wait_for(reply.content.readline(), timeout)).decode().rstrip("\n")  # type: ignore[attr-defined]
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                got.setdefault(kind, []).append(orjson.loads(line[6:]))
        return got

    async def main() -> None:
        async with TestClient(TestServer(make_app(console))) as client:
            await client.post("/login", data={"name": "vera", "password": PASSWORD})
            page = await (await client.get("/live?integration=amp&type=track")).text()
            assert 'data-stream="/live/stream?integration=amp&amp;type=track"' in page
            assert (await client.get("/live?integration=nope")).status == 404
            reply = await client.get("/live/stream?integration=amp")
            assert reply.headers["Content-Type"].startswith("text/event-stream")
            assert "script-src 'self'" in reply.headers["Content-Security-Policy"]
            await messages(reply, {"ready": 1})
            started = time.monotonic()
            ids = await asyncio.to_thread(write_outbound, bootstrap, topics, "amp", "amplitude", [
                {"event_type": "Order Completed", "user_id": f"user-{i}",
                 "user_properties": {"email": "ana@example.com"}} for i in range(5)])
            got = await messages(reply, {"event": 5, "outcome": 5})
            took = time.monotonic() - started
            assert {e["id"] for e in got["event"]} == set(ids)
            assert all(e["payload"]["user_properties"]["email"] == "(masked)" for e in got["event"])  # type: ignore[index]
            assert {(o["state"], o["status"], o["integration"]) for o in got["outcome"]} == {("delivered", 200, "amp")}
            assert took < 10, took
            reply.close()

            incoming = await client.get("/live/stream?name=signed&user=u-1&pipeline=web")
            await messages(incoming, {"ready": 1})
            await asyncio.to_thread(send_events, bootstrap, topics, [
                {"type": "track", "event": name, "userId": user, "messageId": f"in-{n}", "writeKey": "wk1",
                 "timestamp": "2026-12-06T00:00:00Z", "properties": {}}
                for n, (name, user) in enumerate([("Signed Up", "u-1"), ("Signed Up", "u-2"), ("Order", "u-1")])])
            got = await messages(incoming, {"event": 1})
            (event,) = got["event"]
            assert event["id"] == "in-0" and "writeKey" not in event["payload"]  # type: ignore[operator]
            assert event["pipeline"] == "web"
            incoming.close()

    try:
        asyncio.run(main())
    finally:
        runner.stop()
        hub.stop()
        store.stop()
        stand_in.stop()


def test_a_replay_sends_exactly_its_window_again_under_the_same_message_ids_and_a_viewer_cannot(
        bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventrouter.console.auth import ADMIN, VIEWER
    from eventrouter.console.replays import KafkaReplays
    from forwarders.app import find_integration
    from tests.integration.forwarder_helpers import ForwarderThread, wait_for, write_outbound

    topics, stand_in, revision = _amplitude(bootstrap, tmp_path, "linger_ms: 20, batch_size: 50")
    monkeypatch.setenv("AMP_KEY", "amp-key")
    batches, edges = [], []
    for n in range(3):
        edges.append(int(time.time() * 1000))
        batches.append(write_outbound(bootstrap, topics, "amp", "amplitude", [
            {"event_type": "Order Completed", "user_id": f"user-{i}"} for i in range(10)], prefix=f"b{n}"))
        time.sleep(0.3)
    edges.append(int(time.time() * 1000))
    runner = ForwarderThread(bootstrap, topics, find_integration(revision.config(), "amp"))
    users = tmp_path / "users.json"
    add_user(users, "ada", ADMIN, PASSWORD)
    add_user(users, "vera", VIEWER, PASSWORD)
    store = KafkaStore(bootstrap, topics).start()
    console = Console(store, users, Sessions(b"k" * 32), environ={}, replays=KafkaReplays(bootstrap, topics))
    _until(lambda: len(store.history()) == 1)
    window = {"integration": "amp", "since": str(edges[1]), "until": str(edges[2]), "rate": "200"}

    async def main() -> None:
        await asyncio.to_thread(wait_for, lambda: len(stand_in.keys) == 30, what="all 30 delivered live")
        async with TestClient(TestServer(make_app(console))) as client:
            token = await _login(client, "vera")
            page = await (await client.get("/replay")).text()
            assert "can see replays but not start one" in page and 'id="replay-start"' not in page
            assert (await client.post("/replay", data={"csrf": token, **window})).status == 403
            await client.post("/logout", data={"csrf": token})

            token = await _login(client, "ada")
            bad = await client.post("/replay", data={"csrf": token, **window, "until": "yesterday-ish"})
            assert bad.status == 400 and "until:" in html.unescape(await bad.text())
            dry = html.unescape(await (await client.post("/replay", data={"csrf": token, **window,
                                                                          "dry_run": "1"})).text())
            assert "events: 10" in dry and "deduplicates on insert_id" in dry, dry
            assert len(stand_in.keys) == 30 and stand_in.duplicates == 0  # a dry run sends nothing
            started = await client.post("/replay", data={"csrf": token, **window}, allow_redirects=False)
            assert started.status == 303, await started.text()
            where = started.headers["Location"]

            async def progress() -> str:
                return html.unescape(await (await client.get(where)).text())

            deadline = time.monotonic() + 60
            while "finished" not in (shown := await progress()):
                assert time.monotonic() < deadline, shown
                await asyncio.sleep(0.3)
            assert "written 10 of 10" in shown and "delivered 10, dead-lettered 0" in shown, shown
            audit = html.unescape(await (await client.get("/audit")).text())
            assert "replay of amp" in audit and "10 events" in audit

    try:
        asyncio.run(main())
    finally:
        runner.stop()
        store.stop()
        stand_in.stop()
    again = {key for key, n in stand_in.keys.items() if n == 2}
    assert again == set(batches[1]) and stand_in.duplicates == 10, "exactly the window, under the same ids"
