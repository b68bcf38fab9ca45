"""The console's handlers through aiohttp's test client, on an in-memory store: every route for every
role, the CSRF token, session expiry, security headers, and bad input answered with the field and the
reason (never a traceback, never a 500). The real store on the real broker is the browser test's."""

from __future__ import annotations

import asyncio
import html
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from eventrouter.console.app import make_app
from eventrouter.console.auth import ADMIN, EDITOR, VIEWER, Sessions
from eventrouter.console.screens import cut_key
from eventrouter.console.users import Bootstrap, add_user
from eventrouter.console.web import COOKIE, Console
from eventrouter.dev.memory_store import MemoryStore
from schemas.config import resolved_document

EXAMPLE = Path(__file__).parents[4] / "examples" / "eventrouter.yaml"
PASSWORD = "a long enough password"


def document() -> dict[str, Any]:
    return resolved_document(EXAMPLE.read_text(), EXAMPLE.parent, str(EXAMPLE))


def console(tmp_path: Path, users: bool = True) -> Console:
    path = tmp_path / "users.json"
    if users:
        for name, role in (("vera", VIEWER), ("ed", EDITOR), ("ada", ADMIN)):
            add_user(path, name, role, PASSWORD)
    return Console(MemoryStore(document()), path, Sessions(b"k" * 32), environ={"AMPLITUDE_API_KEY": "x"},
                   bootstrap=None if users else Bootstrap())


def run(con: Console, test: Callable[[TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TestClient(TestServer(make_app(con))) as client:
            await test(client)
    asyncio.run(main())


async def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Logs in; the CSRF token of the session (from the page's meta tag)."""
    reply = await client.post("/login", data={"name": name, "password": password}, allow_redirects=False)
    assert reply.status == 303, await reply.text()
    page = await (await client.get("/sources")).text()
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, page
    return found[1]


def test_every_page_needs_a_login_and_a_form_post_without_one_is_refused(tmp_path: Path) -> None:
    async def test(client: TestClient) -> None:
        for path in ("/", "/sources", "/integrations", "/integrations/amplitude", "/revisions", "/audit", "/live",
                     "/live/stream", "/replay", "/replay/j1", "/integrations/amplitude/delivery", "/deadletters"):
            reply = await client.get(path, allow_redirects=False)
            assert (reply.status, reply.headers["Location"]) == (303, "/login"), path
        for path in ("/integrations/amplitude/playbook", "/revisions/1/rollback", "/logout"):
            assert (await client.post(path, data={}, allow_redirects=False)).status == 401, path
        assert (await client.get("/login")).status == 200
    run(console(tmp_path), test)


def test_each_screen_shows_the_revision_in_force_and_never_a_secret_value(tmp_path: Path) -> None:
    async def test(client: TestClient) -> None:
        await login(client, "vera")
        sources = await (await client.get("/sources")).text()
        assert "web-prod" in sources and "wk_l…" in sources and "wk_live_123" not in sources
        integrations = await (await client.get("/integrations")).text()
        for text in ("Google Analytics 4", "PostHog", "amplitude", "${AMPLITUDE_API_KEY}</code> set",
                     "${GA4_API_SECRET}</code> not set"):
            assert text in integrations, text
        # the catalogue says what `eventrouter vendors` says: replay safety, time window, the ids it matches on
        for text in ("yes (event_id with event_name (48 h))", "up to 72 hours old",
                     '<code title="carried in context.fbc">fbc</code>'):
            assert text in integrations, text
        page = await (await client.get("/integrations/amplitude")).text()
        assert "${AMPLITUDE_API_KEY}" in page and "https://api2.amplitude.com/2/httpapi" in page
        assert 'value="x"' not in page and "Save as new revision" not in page  # a viewer: no edit control
        assert "readonly" in page
        assert "revision 1" in await (await client.get("/audit")).text()
        missing = await client.get("/integrations/nope")
        assert missing.status == 404 and "No integration named" in await missing.text()
    run(console(tmp_path), test)


def test_every_answer_carries_the_security_headers_and_the_session_cookie_is_strict(tmp_path: Path) -> None:
    async def test(client: TestClient) -> None:
        reply = await client.post("/login", data={"name": "ed", "password": PASSWORD}, allow_redirects=False)
        cookie = reply.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        for path in ("/login", "/sources", "/static/console.css", "/nope"):
            got = await client.get(path)
            csp = got.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
            assert got.headers["X-Frame-Options"] == "DENY" and got.headers["X-Content-Type-Options"] == "nosniff"
        page = await (await client.get("/integrations/amplitude")).text()
        assert "<script>" not in page and " style=" not in page and "onclick" not in page.lower()
    run(console(tmp_path), test)


def test_a_state_changing_request_without_the_sessions_csrf_token_is_refused(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        playbook = (await (await client.get("/integrations/amplitude")).text())
        assert "Save as new revision" in playbook
        for csrf in ("", "forged", None):
            data = {"playbook": "events: {}", "message": "m"} | ({"csrf": csrf} if csrf is not None else {})
            reply = await client.post("/integrations/amplitude/playbook", data=data)
            assert reply.status == 403 and "CSRF" in await reply.text()
        assert len(con.store.history()) == 1
        reply = await client.post("/logout", data={"csrf": token}, allow_redirects=False)
        assert reply.status == 303
    run(con, test)


def test_an_editor_saves_a_playbook_as_a_new_revision_and_rolls_back(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        page = await (await client.get("/integrations/amplitude")).text()
        text = re.search(r'<textarea id="playbook"[^>]*>([^<]*)</textarea>', page)
        assert text
        shaped = yaml.safe_load(html.unescape(text[1]))
        shaped["filter"] = {"deny": {"event": ["Order Completed"]}}
        playbook = yaml.safe_dump(shaped)
        tried = await client.post("/integrations/amplitude/try", data={"csrf": token, "playbook": playbook,
                                                                       "sample": "track"},
                                  headers={"X-Fragment": "trial"})
        assert tried.status == 200
        fragment = await tried.text()
        assert "Filtered by" in fragment and "<html" not in fragment
        saved = await client.post("/integrations/amplitude/playbook", allow_redirects=False,
                                  data={"csrf": token, "playbook": playbook, "message": "drop orders"})
        assert saved.status == 303, await saved.text()
        assert [r.number for r in con.store.history()] == [1, 2]
        assert con.store.history()[-1].applied_by == "ed" and "drop orders" in con.store.history()[-1].source
        revisions = await (await client.get("/revisions")).text()
        assert "(in force)" in revisions and "Roll back to this" in revisions and "Order Completed" in revisions
        back = await client.post("/revisions/1/rollback", data={"csrf": token}, allow_redirects=False)
        assert back.status == 303
        assert con.store.history()[-1].document == con.store.history()[0].document
        audit = await (await client.get("/audit")).text()
        assert "revision 3" in audit and "rollback to 1" in audit and "drop orders" in audit
    run(con, test)


def test_the_test_panel_shows_the_request_with_references_not_secrets_and_sends_nothing(tmp_path: Path) -> None:
    async def test(client: TestClient) -> None:
        token = await login(client, "vera")  # a viewer may try; trying changes nothing
        page = await (await client.get("/integrations/amplitude")).text()
        playbook = html.unescape(re.search(r'<textarea id="playbook"[^>]*>([^<]*)</textarea>', page)[1])  # type: ignore[index]
        reply = await client.post("/integrations/amplitude/try", headers={"X-Fragment": "trial"},
                                  data={"csrf": token, "playbook": playbook, "sample": "identify"})
        fragment = html.unescape(await reply.text())
        assert "POST https://api2.amplitude.com/2/httpapi" in fragment
        assert '"api_key": "${AMPLITUDE_API_KEY}"' in fragment and '"x"' not in fragment
    run(console(tmp_path), test)


@pytest.mark.parametrize(("playbook", "expected"), [
    ("events: [", "not YAML"),
    ("events: {Order Completed: {mappings: [{from: a}]}}", "integrations[2].playbook"),
    ("x" * 600_000, "Not done"),  # over the form limit: refused, not a 500
])
def test_bad_input_gets_the_field_and_the_reason_never_a_500(tmp_path: Path, playbook: str, expected: str) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        reply = await client.post("/integrations/amplitude/playbook",
                                  data={"csrf": token, "playbook": playbook, "message": "m"})
        text = await reply.text()
        assert reply.status in (400, 403, 413) and expected in text, text[:3000]
        assert "Traceback" not in text and len(con.store.history()) == 1
        reply = await client.post("/integrations/amplitude/try", headers={"X-Fragment": "trial"},
                                  data={"csrf": token, "playbook": "{}", "event": "{not json"})
        assert reply.status == 200 and "event: not JSON" in await reply.text()
        no_message = await client.post("/integrations/amplitude/playbook",
                                       data={"csrf": token, "playbook": "{}", "message": " "})
        assert no_message.status == 400 and "message: say what the change is for" in await no_message.text()
    run(con, test)


def test_a_viewer_cannot_change_anything_whatever_it_posts(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "vera")
        for path, data in (("/integrations/amplitude/playbook", {"playbook": "{}", "message": "m"}),
                           ("/revisions/1/rollback", {})):
            reply = await client.post(path, data={"csrf": token, **data})
            assert reply.status == 403 and "Your role (viewer) cannot do this" in await reply.text()
        assert len(con.store.history()) == 1
        assert "Roll back to this" not in await (await client.get("/revisions")).text()
    run(con, test)


def test_a_session_ends_at_logout_and_at_expiry(tmp_path: Path) -> None:
    con = console(tmp_path)
    now = [1_000_000.0]
    con.sessions = Sessions(b"k" * 32, clock=lambda: now[0])

    async def test(client: TestClient) -> None:
        token = await login(client, "ada")
        cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
        await client.post("/logout", data={"csrf": token}, allow_redirects=False)
        reply = await client.get("/sources", cookies={COOKIE: cookie}, allow_redirects=False)
        assert reply.status == 303  # the old cookie no longer works
        await login(client, "ada")
        now[0] += 9 * 3600
        assert (await client.get("/sources", allow_redirects=False)).status == 303
    run(con, test)


def test_wrong_passwords_are_answered_alike_and_then_limited(tmp_path: Path) -> None:
    async def test(client: TestClient) -> None:
        for name in ("ed", "nobody", "ed", "ed", "ed"):
            reply = await client.post("/login", data={"name": name, "password": "wrong password"})
            assert reply.status == 401 and "Name or password is wrong." in await reply.text()
        reply = await client.post("/login", data={"name": "ed", "password": PASSWORD})
        assert reply.status == 429 and "Too many attempts" in await reply.text()
    run(console(tmp_path), test)


def test_with_no_user_the_bootstrap_token_makes_the_first_admin_once(tmp_path: Path) -> None:
    con = console(tmp_path, users=False)
    assert con.bootstrap is not None and con.bootstrap.token is not None
    token = con.bootstrap.token

    async def test(client: TestClient) -> None:
        assert (await client.get("/login", allow_redirects=False)).headers["Location"] == "/bootstrap"
        wrong = await client.post("/bootstrap", data={"token": "guess", "name": "ada", "password": PASSWORD})
        assert wrong.status == 400 and "not the bootstrap token" in await wrong.text()
        made = await client.post("/bootstrap", data={"token": token, "name": "ada", "password": PASSWORD},
                                 allow_redirects=False)
        assert made.status == 303
        assert "ada" in await (await client.get("/audit")).text()
        again = await client.get("/bootstrap", allow_redirects=False)
        assert again.headers["Location"] == "/login"
    run(con, test)
    assert [r.action for r in con.store.audit()] == ["user"]


def test_an_admin_makes_a_write_key_shown_once_then_cut_and_revokes_the_old_one(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ada")
        made = await client.post("/sources/key", data={"csrf": token, "pipeline": "web-prod"})
        page = await made.text()
        key = re.search(r'<code id="new-key">(wk_[^<]+)</code>', page)
        assert made.status == 200 and key, page
        later = await (await client.get("/sources")).text()
        assert key[1] not in later and key[1][:4] + "…" in later  # shown once, then cut
        assert con.store.history()[-1].applied_by == "ada"
        assert "a new writeKey" in con.store.history()[-1].source and key[1] not in con.store.history()[-1].source
        revoked = await client.post("/sources/revoke", data={"csrf": token, "pipeline": "web-prod", "index": "0"})
        assert revoked.status == 200
        assert con.store.history()[-1].document["pipelines"][0]["write_keys"] == [key[1]]
        for path in ("/revisions", f"/revisions/{con.store.history()[-1].number}", "/audit"):
            shown = await (await client.get(path)).text()  # a diff shows which key changed, never a key
            assert key[1] not in shown and "wk_live_123" not in shown and cut_key(key[1]) in shown, path
        bad = await client.post("/sources/revoke", data={"csrf": token, "pipeline": "web-prod", "index": "x"})
        assert bad.status == 400 and "index: not a number" in await bad.text()
        created = await client.post("/sources/create", data={"csrf": token, "pipeline": "mobile"})
        assert created.status == 200 and 'id="new-key"' in await created.text()
    run(con, test)


def test_an_editor_cannot_touch_write_keys_and_adds_an_integration_from_the_catalogue(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        assert "New writeKey" not in await (await client.get("/sources")).text()
        refused = await client.post("/sources/key", data={"csrf": token, "pipeline": "web-prod"})
        assert refused.status == 403 and len(con.store.history()) == 1
        added = await client.post("/integrations", allow_redirects=False,
                                  data={"csrf": token, "kind": "posthog", "name": "ph", "pipeline": "web-prod"})
        assert added.status == 303 and added.headers["Location"] == "/integrations/ph"
        page = await (await client.get("/integrations/ph")).text()
        assert "${POSTHOG_API_KEY}" in page and "not set" in page
        twice = await client.post("/integrations", data={"csrf": token, "kind": "posthog", "name": "ph"})
        assert twice.status == 400 and "exists already" in await twice.text()
        literal = await client.post("/integrations/crm-hook/connection", data={
            "csrf": token, "connection": "url: https://h.example/x\nheaders: {X-Api-Key: ak-live-123456789}\n"})
        text = await literal.text()
        assert literal.status == 400 and "headers.X-Api-Key" in text and "ak-live-123456789" not in text
        off = await client.post("/integrations/ph/disable", data={"csrf": token}, allow_redirects=False)
        assert off.status == 303
        gone = await client.post("/integrations/ph/remove", data={"csrf": token}, allow_redirects=False)
        assert gone.status == 303 and "ph" not in {i["name"] for i in con.store.history()[-1].document[
            "integrations"]}
        assert [r.number for r in con.store.history()] == [1, 2, 3, 4]
    run(con, test)


def test_a_post_from_another_site_is_refused_and_a_removed_user_is_logged_out(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        forged = await client.post("/login", data={"name": "ed", "password": PASSWORD},
                                   headers={"Origin": "https://evil.example"})
        assert forged.status == 403
        token = await login(client, "ed")
        forged = await client.post("/revisions/1/rollback", data={"csrf": token},
                                   headers={"Origin": "https://evil.example"})
        assert forged.status == 403 and len(con.store.history()) == 1
        add_user(con.users_path, "ed", VIEWER, PASSWORD)  # demoted: the next request already knows
        assert "Save as new revision" not in await (await client.get("/integrations/amplitude")).text()
        con.users_path.write_text('{"users": []}')
        assert (await client.get("/sources", allow_redirects=False)).status == 303
    run(con, test)


def test_each_revision_has_a_page_with_its_diff_and_the_audit_log_links_to_it(tmp_path: Path) -> None:
    con = console(tmp_path)
    for n in range(5):
        con.store.publish({**document(), "settings": {"max_future_s": 100 + n}}, f"change {n}", "ops@host")

    async def test(client: TestClient) -> None:
        await login(client, "vera")
        listed = await (await client.get("/revisions")).text()
        assert listed.count('<tr class="diff">') == 3 and 'href="/revisions/2"' in listed  # older: on their page
        page = html.unescape(await (await client.get("/revisions/2")).text())
        assert "Changes since revision 1" in page and "+  max_future_s: 100" in page and "change 0" in page
        assert "Roll back to this" not in page  # a viewer
        first = await (await client.get("/revisions/1")).text()
        assert "(the first revision)" in first
        for path in ("/revisions/99", "/revisions/x"):
            missing = await client.get(path)
            assert missing.status == 404 and "No such revision" in await missing.text()
        assert 'href="/revisions/6"' in await (await client.get("/audit")).text()
    run(con, test)


def test_an_admin_manages_users_each_change_audited_and_the_last_admin_stays(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        assert (await client.get("/users")).status == 403
        assert (await client.post("/users/add", data={"csrf": token, "name": "x", "role": "admin",
                                                      "password": PASSWORD})).status == 403
        await client.post("/logout", data={"csrf": token})
        token = await login(client, "ada")
        assert "vera" in await (await client.get("/users")).text()
        made = await client.post("/users/add", allow_redirects=False,
                                 data={"csrf": token, "name": "nina", "role": "editor", "password": PASSWORD})
        assert made.status == 303 and con.users()["nina"].role == EDITOR
        short = await client.post("/users/add", data={"csrf": token, "name": "olga", "role": "viewer",
                                                      "password": "short"})
        assert short.status == 400 and "password: at least 12 characters" in await short.text()
        assert "short" not in await short.text()  # a password is never echoed
        await client.post("/users/role", data={"csrf": token, "name": "nina", "role": "viewer"})
        assert con.users()["nina"].role == VIEWER
        last = await client.post("/users/role", data={"csrf": token, "name": "ada", "role": "viewer"})
        assert last.status == 400 and "last admin" in await last.text() and con.users()["ada"].role == ADMIN
        assert (await client.post("/users/remove", data={"csrf": token, "name": "ada"})).status == 400
        await client.post("/users/remove", data={"csrf": token, "name": "nina"})
        assert "nina" not in con.users()
        summaries = [r.summary for r in con.store.audit()]
        assert summaries == ["nina: made, role editor", "nina: role set to viewer", "nina: removed"]
        assert all(PASSWORD not in r.encode().decode() for r in con.store.audit())
        audit = await (await client.get("/audit")).text()
        assert "user nina" in audit and "nina: removed" in audit
    run(con, test)


def test_the_test_panel_takes_the_newest_live_event_of_the_pipeline_masked_for_a_viewer(tmp_path: Path) -> None:
    from eventrouter.console.store import LiveEvent

    con = console(tmp_path)
    store = con.store
    assert isinstance(store, MemoryStore)
    store.raw = [("wk_live_123", LiveEvent(1_700_000_000_000, {"type": "identify", "userId": "u-1",
                                                              "traits": {"email": "old@example.com"}})),
                 ("wk_other", LiveEvent(1_700_000_001_000, {"type": "track", "event": "Not Ours"})),
                 ("wk_live_123", LiveEvent(1_700_000_002_000, {"type": "identify", "userId": "u-2",
                                                              "traits": {"email": "ana@example.com",
                                                                         "plan": "pro"}}))]

    async def test(client: TestClient) -> None:
        for name, masked in (("vera", True), ("ed", False)):
            token = await login(client, name)
            page = html.unescape(await (await client.post("/integrations/amplitude/live",
                                                          data={"csrf": token, "playbook": ""})).text())
            assert '"userId": "u-2"' in page and "Not Ours" not in page and "The newest event of web-prod" in page
            assert ("ana@example.com" not in page and '"email": "(masked)"' in page) if masked \
                else "ana@example.com" in page
            assert '"plan": "pro"' in page
            await client.post("/logout", data={"csrf": token})
        store.raw.clear()
        token = await login(client, "ed")
        empty = await (await client.post("/integrations/amplitude/live", data={"csrf": token})).text()
        assert "No recent event from web-prod" in empty
    run(con, test)


def test_an_editor_sets_consent_and_delivery_settings_each_checked_by_the_config(tmp_path: Path) -> None:
    con = console(tmp_path)

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        saved = await client.post("/integrations/amplitude/policy", allow_redirects=False, data={
            "csrf": token, "consent": "analytics", "consent_required": "on", "delivery": "rate_per_s: 5\n"})
        assert saved.status == 303, await saved.text()
        entry = next(i for i in con.store.history()[-1].document["integrations"] if i["name"] == "amplitude")
        assert (entry["consent"], entry["consent_required"], entry["delivery"]) == ("analytics", True,
                                                                                   {"rate_per_s": 5})
        page = await (await client.get("/integrations/amplitude")).text()
        assert "rate_per_s: 5" in page and 'value="analytics"' in page
        bad = await client.post("/integrations/amplitude/policy", data={
            "csrf": token, "consent": "", "delivery": "max_attempts: 0\n"})
        assert bad.status == 400 and "max_attempts" in await bad.text() and len(con.store.history()) == 2
        cleared = await client.post("/integrations/amplitude/policy", allow_redirects=False,
                                    data={"csrf": token, "consent": "", "delivery": ""})
        assert cleared.status == 303
        entry = next(i for i in con.store.history()[-1].document["integrations"] if i["name"] == "amplitude")
        assert not {"consent", "consent_required", "delivery"} & set(entry)
    run(con, test)


def test_the_test_panel_shows_the_playbooks_changes_against_the_revision_in_force(tmp_path: Path) -> None:
    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        page = await (await client.get("/integrations/amplitude")).text()
        assert "Changes against the revision in force" not in page
        text = html.unescape(re.search(r'<textarea id="playbook"[^>]*>([^<]*)</textarea>', page)[1])  # type: ignore[index]
        same = await client.post("/integrations/amplitude/try", headers={"X-Fragment": "trial"},
                                 data={"csrf": token, "playbook": "# a comment only\n" + text, "sample": "track"})
        assert "Changes against" not in await same.text()  # comments and layout do not count
        shaped = yaml.safe_load(text)
        shaped["filter"] = {"deny": {"event": ["Debug"]}}
        changed = await client.post("/integrations/amplitude/try", headers={"X-Fragment": "trial"},
                                    data={"csrf": token, "playbook": yaml.safe_dump(shaped), "sample": "track"})
        fragment = html.unescape(await changed.text())
        assert "Changes against the revision in force" in fragment and "+  deny:" in fragment
    run(console(tmp_path), test)


class FakeLetters:
    """Dead letters in memory: one integration with two letters of one reason."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool]] = []

    def totals(self, config: Any) -> dict[str, int]:
        return {"invalid": 0, **{i.name: 2 if i.name == "amplitude" else 0 for i in config.integrations}}

    def page(self, config: Any, where: str, reason: str) -> Any:
        from collections import Counter

        from eventrouter.console.letters import LetterPage, LetterRow, topic_of
        from schemas import Topics

        topic_of(Topics("t"), config, where)  # ConfigurationError for an unknown integration
        row = LetterRow(0, 7, 1_700_000_000_000, "vendor.rejected", "deliver", where, "m-1", 1, "401", 401)
        return LetterPage(where, 2, 2, Counter({"vendor.rejected": 2}), [row])

    def one(self, config: Any, where: str, partition: int, offset: int) -> dict[str, Any] | None:
        return {"reason": "vendor.rejected", "original": {"payload": {"email": "ana@example.com"}}} \
            if (partition, offset) == (0, 7) else None

    def send_again(self, config: Any, revision: int, where: str, reason: str, *, dry_run: bool,
                   picked: Any = ()) -> tuple[list[str], list[tuple[str, str]]]:
        self.sent.append((where, reason, dry_run))
        self.picked = list(picked)
        return ["dead letters chosen: 2", f"re-injected into {where}: 2"], [] if dry_run else [(where, "m-1")]


def test_dead_letters_are_read_by_every_role_and_sent_again_by_an_admin_alone(tmp_path: Path) -> None:
    con = console(tmp_path)
    con.letters = letters = FakeLetters()

    async def test(client: TestClient) -> None:
        token = await login(client, "ed")
        assert "amplitude" in await (await client.get("/deadletters")).text()
        page = await (await client.get("/deadletters/amplitude")).text()
        assert "vendor.rejected" in page and "Re-inject" not in page
        assert (await client.get("/deadletters/nope")).status == 404
        assert (await client.get("/deadletters/amplitude/0/8")).status == 404
        assert (await client.get("/deadletters/amplitude/x/8")).status == 404
        assert "ana@example.com" in await (await client.get("/deadletters/amplitude/0/7")).text()
        refused = await client.post("/deadletters/amplitude/reinject", data={"csrf": token})
        assert refused.status == 403 and not letters.sent
        await client.post("/logout", data={"csrf": token})
        token = await login(client, "vera")
        one = await (await client.get("/deadletters/amplitude/0/7")).text()
        assert "ana@example.com" not in one and "personal data masked" in one
        await client.post("/logout", data={"csrf": token})
        token = await login(client, "ada")
        dry = await client.post("/deadletters/amplitude/reinject", data={"csrf": token, "reason": "vendor",
                                                                          "dry_run": "1"})
        assert "Dry run (nothing written)" in await dry.text() and not con.store.audit()
        done = await (await client.post("/deadletters/amplitude/reinject", data={"csrf": token})).text()
        assert "Re-injected: amplitude" in done and "re-injected into amplitude: 2" in done
        assert letters.sent == [("amplitude", "vendor", True), ("amplitude", "", False)]
        assert [r.action for r in con.store.audit()] == ["reinject"]
        await client.post("/deadletters/amplitude/reinject", data=[
            ("csrf", token), ("dry_run", "1"), ("pick", "0:7"), ("pick", "2:11"), ("pick", "x:1"), ("pick", "-1:2")])
        assert letters.picked == [(0, 7), (2, 11)]  # what is not a position is ignored
    run(con, test)


def test_the_overview_shows_the_pipeline_from_the_broker_and_says_when_it_does_not_answer(tmp_path: Path) -> None:
    from eventrouter.console.pulse import Pulse
    from eventrouter.console.pulse import window as pulse_window
    from eventrouter.status import Backlog, BrokerUnreachable, IntegrationStatus, Status

    con = console(tmp_path)
    answers: list[Status | Exception] = [
        Status(1, "revision 1", Backlog(120, 3), 2, [IntegrationStatus("amplitude", "amplitude", True,
                                                                        Backlog(100, 0), Backlog(0, 0), 4)]),
        BrokerUnreachable("cannot reach the Kafka broker at 127.0.0.1:1: no metadata within 5 s")]

    def status() -> Status:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer
    con.status = status

    class Beats:  # the heartbeats followed: a worker and amplitude's forwarder, each heard twice
        def __init__(self) -> None:
            self.pulse = Pulse()
            now = int(time.time() * 1000)
            for n, at in enumerate((now - 10_000, now)):
                self.pulse.take({"role": "worker", "for": "kafka engine", "host": "h", "pid": 1, "at": at,
                                 "started": now - 15_000, "counters": [
                                     ["eventrouter_worker_events_in_total", {"pipeline": "web-prod"}, 50 * n],
                                     ["eventrouter_worker_events_out_total", {"pipeline": "web-prod",
                                                                              "integration": "amplitude"}, 40 * n],
                                     ["eventrouter_worker_filtered_total", {"pipeline": "web-prod",
                                      "integration": "amplitude", "rule": "consent.analytics"}, 10 * n]]})
                self.pulse.take({"role": "forwarder", "for": "amplitude", "host": "h", "pid": 2, "at": at,
                                 "started": now - 15_000, "counters": [
                                     ["eventrouter_forwarder_delivered_total", {"integration": "amplitude"}, 36 * n],
                                     ["eventrouter_forwarder_dead_lettered_total", {"integration": "amplitude",
                                                                                    "reason": "vendor.auth"}, 4 * n]]})

        def window(self, name: str, pipelines: list[str], integrations: list[str]) -> Any:
            return pulse_window(self.pulse, name, pipelines, integrations)
    con.heartbeats = Beats()  # type: ignore[assignment]

    async def test(client: TestClient) -> None:
        await login(client, "vera")
        page = await (await client.get("/overview?window=1h")).text()
        row = page.split('id="overview-amplitude">')[1].split("</tr>")[0]
        assert re.search(r"<td>40</td>\s*<td>0</td>\s*<td>10</td>.*<td class=\"good\">36</td>.*"
                         r"vendor.auth</code></a> 4.*90\.0%.*<svg class=\"spark\".*<td>0</td>.*"
                         r"href=\"/deadletters/amplitude\">4<", row, re.S), row
        assert re.search(r'id="pipeline-web-prod"><td>web-prod</td><td>50</td>', page)
        assert page.count('<td class="good">alive</td>') == 2 and "delivered 36, dead-lettered 4, lag 0" in page
        assert 'hx-trigger="every 5s"' in page and 'hx-get="/overview?window=1h"' in page
        down = await client.get("/overview")
        assert down.status == 200 and "cannot reach the Kafka broker at 127.0.0.1:1" in await down.text()
    run(con, test)


# every state-changing route, and the least role that may use it (the server decides; pages only hide)
CHANGES = [("/integrations/amplitude/try", {"playbook": "{}", "sample": "track"}, VIEWER),
           ("/integrations/amplitude/live", {"playbook": ""}, VIEWER),
           ("/integrations/amplitude/playbook", {"playbook": "{}", "message": "m"}, EDITOR),
           ("/integrations/amplitude/disable", {}, EDITOR),
           ("/integrations/amplitude/connection", {"connection": ""}, EDITOR),
           ("/integrations/amplitude/policy", {"consent": ""}, EDITOR),
           ("/integrations", {"name": "n2", "kind": "mixpanel"}, EDITOR),
           ("/revisions/1/rollback", {}, EDITOR),
           ("/sources/key", {"pipeline": "web-prod"}, ADMIN),
           ("/users/role", {"name": "vera", "role": "viewer"}, ADMIN),
           ("/deadletters/amplitude/reinject", {"dry_run": "1"}, ADMIN),
           ("/replay", {"integration": "amplitude", "since": "1h", "dry_run": "1"}, ADMIN),
           ("/replay", {"integration": "amplitude", "since": "1h"}, ADMIN),
           ("/replay/j1/cancel", {}, ADMIN)]


class FakeReplays:
    def __init__(self) -> None:
        from eventrouter.console.replays import Job, Window
        self.made = Job("j1", Window("amplitude", since_ms=0), "ada", 0, total=3)

    def plan(self, config: Any, window: Any) -> list[str]:
        return ["events: 3"]

    def start(self, config: Any, window: Any, by: str) -> Any:
        return self.made

    def jobs(self) -> list[Any]:
        return [self.made]

    def job(self, job_id: str) -> Any:
        return self.made if job_id == "j1" else None

    def cancel(self, job_id: str) -> Any:
        return self.job(job_id)

    def receipts_end(self) -> dict[int, int]:
        return {0: 5}

    def follow(self, sent: list[tuple[str, str]], by: str, label: str, since: dict[int, int]) -> Any:
        return self.made


@pytest.mark.parametrize(("path", "data", "least"), CHANGES, ids=[c[0] for c in CHANGES])
def test_every_change_is_refused_below_its_role_and_without_the_csrf_token(
        tmp_path: Path, path: str, data: dict[str, str], least: str) -> None:
    con = console(tmp_path)
    con.letters, con.replays = FakeLetters(), FakeReplays()
    roles = (VIEWER, EDITOR, ADMIN)  # 400: allowed, and refused by its own check (made twice, say)

    async def test(client: TestClient) -> None:
        for name, role in (("vera", VIEWER), ("ed", EDITOR), ("ada", ADMIN)):
            token = await login(client, name)
            assert (await client.post(path, data=data)).status == 403, (name, "no CSRF token")
            reply = await client.post(path, data={"csrf": token, **data}, allow_redirects=False)
            text = await reply.text()
            if roles.index(role) < roles.index(least):
                assert reply.status == 403 and f"Your role ({role}) cannot do this" in text, (name, text[:500])
            else:
                assert reply.status in (200, 303, 400) and "cannot do this" not in text, (name, reply.status)
            await client.post("/logout", data={"csrf": token})
    run(con, test)


def test_a_live_view_over_the_limit_is_refused_and_one_for_no_integration_is_not_found(tmp_path: Path) -> None:
    class FullHub:
        def open(self, _feed: Any) -> bool:
            return False

        def stop(self) -> None:
            pass

    con = console(tmp_path)
    con.hub = FullHub()  # type: ignore[assignment]

    async def test(client: TestClient) -> None:
        await login(client, "vera")
        full = await client.get("/live/stream")
        assert full.status == 503 and full.headers["Retry-After"] == "30"
        assert (await client.get("/live/stream?integration=nope")).status == 404
        page = await (await client.get("/live?type=track&pipeline=web-prod")).text()
        assert 'data-stream="/live/stream?type=track&amp;pipeline=web-prod"' in page
    run(con, test)
