"""The console in a real headless browser (Debian's chromium and chromium-driver, driven with Selenium),
against the real broker, a worker, the Amplitude forwarder, the gateway and the Amplitude stand-in, as a
person uses it: make the first admin with the bootstrap token, add an integration from the catalogue,
edit a playbook in its editor (CodeMirror), see a problem marked on its line and undo it, watch the test
panel's request change as one types (htmx), save it as a revision, send events through the gateway and
find them at the stand-in shaped by it, try the playbook on the newest live event, read the revision's own
page with its diff, roll back and see the next events shaped by the old one; make a viewer on the Users
screen, who sees no edit control, a read-only editor and the live event's personal data masked, and whose
forged POST is refused; the audit log lists all of it. The browser's console shows no
Content-Security-Policy violation and no script error all along (the policy allows no inline script or
style, no eval and no other origin). A screenshot of every screen is saved (EVENTROUTER_SCREENSHOTS=DIR
keeps them there)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from eventrouter.console.auth import VIEWER
from eventrouter.dev.standins import AmplitudeStandIn
from eventrouter.stack import Stack
from schemas import Topics
from schemas.runtime.revisions import ConfigStore
from tests.integration.forwarder_helpers import wait_for
from tests.integration.stack_helpers import CONFIG

pytestmark = pytest.mark.kafka
CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PASSWORD = "a long enough password"
MARK = "console-revision"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and DRIVER.exists()):
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium and chromium-driver are missing (`make test` installs them)")
        pytest.skip("no /usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # what the page's console says
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


class Person:
    """What a person does in the browser: open, type, click, wait for text; a screenshot of each screen."""

    def __init__(self, driver: Any, url: str, shots: Path) -> None:
        self.driver, self.url, self.shots = driver, url, shots

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def type_in_editor(self, line: int, text: str) -> None:
        """Types `text` and Enter into the playbook editor (CodeMirror) as a person does: a click in it, then the
        keyboard to the start of line `line` (counted from 0), after its indentation, which the new line keeps."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self.editor().click()
        (ActionChains(self.driver).key_down(Keys.CONTROL).send_keys(Keys.HOME).key_up(Keys.CONTROL)
         .send_keys(Keys.DOWN * line, Keys.HOME, text, Keys.ENTER).perform())

    def undo_until(self, playbook: str) -> None:
        """Ctrl+Z in the playbook editor until the playbook reads `playbook` again."""
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        def undone() -> bool:
            if self.find("#playbook").get_attribute("value") == playbook:
                return True
            ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
            return False
        wait_for(undone, timeout=10, what="the edit undone")

    def editor(self) -> Any:
        """The playbook editor's text, which lives in a shadow root (static/playbook.js says why)."""
        return self.find(".code-editor").shadow_root.find_element("css selector", ".cm-content")

    def marked(self) -> list[str]:
        """The text of each problem marked in the playbook editor (read at once: the editor redraws as it likes)."""
        return list(self.driver.execute_script(
            "return Array.from(document.querySelector('.code-editor').shadowRoot"
            ".querySelectorAll('.cm-lintRange-error'), e => e.textContent)"))

    def console_problems(self) -> list[str]:
        """What the browser's console reported since the last call that is a policy violation or a script error
        (a missing favicon is neither)."""
        return [str(e["message"]) for e in self.driver.get_log("browser")
                if e["source"] in ("security", "javascript") or "Content Security Policy" in str(e["message"])]

    def page(self) -> str:
        return str(self.driver.find_element("tag name", "body").text)

    def text(self, css: str) -> str:
        """The element's text, or "" while it is not there (a page coming, or htmx swapping a part)."""
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        try:
            return str(self.find(css).text)
        except (NoSuchElementException, StaleElementReferenceException):
            return ""

    def wait_text(self, text: str, css: str = "body", timeout: float = 20) -> None:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        def shown() -> bool:
            try:
                return text in self.find(css).text
            except (NoSuchElementException, StaleElementReferenceException):  # the next page is still coming
                return False
        wait_for(shown, timeout=timeout, what=f"{text!r} on {self.driver.current_url}")

    def shot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))


def _event(i: int, tag: str) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"user-{i:04d}", "messageId": f"{tag}-{i}",
            "properties": {"revenue": 9.5, "currency": "eur"}, "context": {"traits": {"email": "ana@example.com"}}}


def _send(url: str, tag: str, count: int = 5) -> None:
    reply = requests.post(url, json={"batch": [_event(i, tag) for i in range(count)]}, auth=("wk1", ""), timeout=30)
    assert reply.status_code == 200 and not reply.json().get("rejected"), reply.text


def _at_stand_in(stand_in: AmplitudeStandIn, tag: str) -> list[dict[str, Any]]:
    return [e for e in list(stand_in.accepted) if str(e.get("insert_id", "")).startswith(f"{tag}-")]


def _first_admin(person: Person, stack: Stack) -> None:
    """The first admin, ada, made with the one-time token the console printed."""
    console_log = stack.folder / "console.log"
    wait_for(lambda: re.search(r"one-time token \S+\n", console_log.read_text()) is not None, timeout=60,
             what="the bootstrap token")  # its whole line: the log may be read while it is being written
    token = re.search(r"one-time token (\S+)", console_log.read_text())
    assert token
    person.open("/")
    person.wait_text("Make the first admin")
    person.shot("bootstrap")
    person.type("input[name=token]", token[1])
    person.type("input[name=name]", "ada")
    person.type("input[name=password]", PASSWORD)
    person.find("form button[type=submit]").click()
    person.wait_text("Sources", "h1")


def _stack(bootstrap: str, tmp_path: Path, config_text: str,
           env: dict[str, str]) -> tuple[Topics, AmplitudeStandIn, Stack, Path]:
    """An Amplitude stand-in, `config_text` (its `{url}` the stand-in's) applied, and `up`'s processes with
    the console started on it, the worker and the forwarder in their groups; the users file."""
    topics = Topics(f"b{uuid.uuid4().hex[:8]}")
    stand_in = AmplitudeStandIn().start()
    config = tmp_path / "eventrouter.yaml"
    config.write_text(config_text.format(url=stand_in.url))
    ConfigStore(bootstrap, topics).apply(config)
    users = tmp_path / "console-users.json"
    stack = Stack(bootstrap, topics, config, tmp_path / "logs", env=env, partitions=3, console_port=0,
                  console_users=users).start()
    try:
        for role in ("worker-1", "forward-amp"):
            wait_for(lambda r=role: "assigned" in (stack.folder / f"{r}.log").read_text(), timeout=90, what=role)
    except BaseException:
        stack.stop()
        stand_in.stop()
        raise
    return topics, stand_in, stack, users


def _log_in_again(person: Person, name: str) -> None:
    """Log out, and in as `name`."""
    person.find("header form button").click()
    person.wait_text("Log in", "h1")
    person.shot("login")
    person.type("input[name=name]", name)
    person.type("input[name=password]", PASSWORD)
    person.find("form button[type=submit]").click()
    person.wait_text("Sources", "h1")


def _screens(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("EVENTROUTER_SCREENSHOTS") or tmp_path / "screens")
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def test_a_person_shapes_events_in_the_console_and_rolls_back(bootstrap: str, tmp_path: Path, browser: Any) -> None:
    shots = _screens(tmp_path)
    topics, stand_in, stack, _users = _stack(bootstrap, tmp_path, CONFIG, {"AMP_KEY": "amp-key"})
    try:
        gateway = f"http://127.0.0.1:{stack.gateway_port}/v1/batch"
        person = Person(browser, f"http://127.0.0.1:{stack.console_port}", shots)
        _first_admin(person, stack)
        person.shot("sources")
        assert "web" in person.page() and "wk1" not in person.find("main").text  # writeKeys cut: wk1 is short

        # an integration from the catalogue, with its starter kit and `${ENV}` references to fill in
        person.open("/integrations")
        person.wait_text("Catalogue")
        person.shot("integrations")
        row = person.find("#kind-posthog")
        row.find_element("css selector", "input[name=name]").send_keys("product-analytics")
        row.find_element("css selector", "button[type=submit]").click()
        person.wait_text("product-analytics", "h1")
        assert "${POSTHOG_API_KEY}" in person.page()

        # the playbook editor: a problem is marked on its line; the test panel follows the typing; save as a
        # new revision. The textarea (the form's field) is hidden behind the editor and follows it.
        person.open("/integrations/amp")
        person.wait_text("POST " + stand_in.url + "/2/httpapi", "#trial-result")
        person.shot("playbook-editor")
        assert not person.find("#playbook").is_displayed() and person.editor().is_displayed()
        original = person.find("#playbook").get_attribute("value")
        person.type_in_editor(0, "nope: 1")
        person.wait_text("playbook.nope: unknown key", "#trial-result")
        wait_for(lambda: person.marked() == ["nope: 1"], timeout=10, what="the problem marked on its line")
        person.shot("playbook-problem")
        person.undo_until(original)
        person.wait_text("POST " + stand_in.url + "/2/httpapi", "#trial-result")
        lines = str(person.find("#playbook").get_attribute("value")).splitlines()
        person.type_in_editor(lines.index("  Order Completed:") + 1, f"enrich: {{event_properties.shaped_by: {MARK}}}")
        person.wait_text(f'"shaped_by": "{MARK}"', "#trial-result")  # the request changed as it was typed
        playbook = yaml.safe_load(str(person.find("#playbook").get_attribute("value")))
        assert playbook["events"]["Order Completed"]["enrich"] == {"event_properties.shaped_by": MARK}
        person.shot("test-panel")
        assert person.console_problems() == []
        person.type("#message", "mark orders shaped in the console")
        person.find("#save").click()
        person.wait_text("Config revisions", "h1")
        person.shot("revisions")
        assert "console: amp: mark orders shaped in the console" in person.page()

        # events through the gateway arrive shaped by the new revision (the worker takes it up live)
        def shaped(marked: bool) -> bool:
            """Five events sent, all delivered: whether each bears the mark as `marked` says."""
            tag = uuid.uuid4().hex[:8]
            _send(gateway, tag)
            wait_for(lambda: len(_at_stand_in(stand_in, tag)) == 5, timeout=60, what="five events delivered")
            return all((e.get("event_properties", {}).get("shaped_by") == MARK) == marked
                       for e in _at_stand_in(stand_in, tag))

        wait_for(lambda: shaped(True), timeout=90, what="events shaped by revision 3")

        # the test panel on the newest live event of the pipeline (from the raw topic)
        person.open("/integrations/amp")
        person.wait_text("POST " + stand_in.url + "/2/httpapi", "#trial-result")
        person.find("#live").click()
        person.wait_text("The newest event of web", "#event-note")
        assert "ana@example.com" in str(person.find("#event").get_attribute("value"))
        person.wait_text(f'"shaped_by": "{MARK}"', "#trial-result")
        person.shot("live-event")

        # a revision's own page, with its diff
        person.open("/revisions")
        person.wait_text("Config revisions", "h1")
        person.find("#r3 a").click()
        person.wait_text("Changes since revision 2", "h2")
        assert f"shaped_by: {MARK}" in person.page()
        person.shot("revision")
        person.open("/revisions")
        person.wait_text("Config revisions", "h1")

        # roll back to the first revision: the next events are shaped by it again
        rows = person.all("tr[id^=r]")
        first = next(r for r in rows if r.get_attribute("id") == "r1")
        first.find_element("css selector", "button[type=submit]").click()
        person.wait_text("rollback to 1")
        wait_for(lambda: shaped(False), timeout=90, what="events shaped by revision 1 again")

        # a viewer, made on the Users screen, sees no edit control and personal data masked; a forged POST is
        # refused
        person.open("/users")
        person.wait_text("Console users", "h1")
        person.type("form[action='/users/add'] input[name=name]", "vera")
        from selenium.webdriver.support.ui import Select

        Select(person.find("form[action='/users/add'] select[name=role]")).select_by_visible_text(VIEWER)
        person.type("form[action='/users/add'] input[name=password]", PASSWORD)
        person.find("form[action='/users/add'] button[type=submit]").click()
        person.wait_text("vera", "#user-vera")
        person.shot("users")
        _log_in_again(person, "vera")
        person.open("/integrations/amp")
        person.wait_text("amp", "h1")
        assert not person.all("#save") and person.find("#playbook").get_attribute("readonly") is not None
        assert person.editor().get_attribute("aria-readonly") == "true"
        person.find("#live").click()
        person.wait_text("personal data masked", "#event-note")
        shown = str(person.find("#event").get_attribute("value"))
        assert "ana@example.com" not in shown and '"email": "(masked)"' in shown
        cookies = {c["name"]: c["value"] for c in browser.get_cookies()}
        before = len(ConfigStore(bootstrap, topics).history())
        forged = requests.post(f"{person.url}/revisions/1/rollback", cookies=cookies, timeout=10,
                               data={"csrf": "forged"})
        assert forged.status_code == 403
        assert len(ConfigStore(bootstrap, topics).history()) == before

        # the overview, from the broker's offsets, and the dead letters (none: every event was delivered)
        person.open("/overview")
        person.wait_text("amp", "#overview-amp")
        person.shot("overview")
        person.open("/deadletters")
        person.wait_text("Dead letters", "h1")
        assert person.find("#letters-amp").text.endswith("0")

        # the audit log lists it all
        person.open("/audit")
        person.wait_text("Audit log", "h1")
        person.shot("audit")
        text = person.page()
        for expected in ("ada made the first admin", "product-analytics: added", "mark orders shaped in the console",
                         "rollback to 1", "vera: made, role viewer"):
            assert expected in text, expected
        assert person.console_problems() == []
    finally:
        stack.stop()
        stand_in.stop()


RECOVERY = """
pipelines: [{{name: web, write_keys: [wk1], integrations: [amp]}}]
integrations:
  - {{name: amp, kind: amplitude, playbook: "starter:amplitude", delivery: {{linger_ms: 50}},
     connection: {{api_key: "${{AMP_OLD_KEY}}", endpoint: "{url}/2/httpapi", allow_http: true, allow_private: true}}}}
"""


def _rows(person: Person, tag: str) -> list[Any]:
    return [r for r in person.all("#live-rows tr") if str(r.get_attribute("data-id")).startswith(f"{tag}-")]


def test_a_person_watches_a_failure_fixes_the_key_and_sends_the_events_again(
        bootstrap: str, tmp_path: Path, browser: Any) -> None:
    """Events appear in Live events as they come, with what became of them; a revoked key turns them into
    dead letters whose vendor answer Delivery detail shows; the key fixed on the integration page, a
    re-injection delivers each exactly once and a second sends nothing; a replay of a window sends exactly
    that window again under the same messageIds, its progress shown; a viewer sees it all and can do none."""
    import time

    from eventrouter.console.users import add_user
    from schemas.runtime.revisions import RevisionWatcher

    shots = _screens(tmp_path)
    topics, stand_in, stack, users = _stack(bootstrap, tmp_path, RECOVERY,
                                            {"AMP_KEY": "amp-key", "AMP_OLD_KEY": "revoked"})
    followed: list[str] = []  # what `up` does with a new revision: restart the forwarder whose settings changed
    watcher = RevisionWatcher(ConfigStore(bootstrap, topics), lambda r, c: followed.extend(stack.follow(r.number, c)))
    watcher.start()
    try:
        gateway = f"http://127.0.0.1:{stack.gateway_port}/v1/batch"
        person = Person(browser, f"http://127.0.0.1:{stack.console_port}", shots)
        _first_admin(person, stack)

        # Live events: what comes in, within 2 s, and then each event's outcome (the key is revoked)
        person.open("/live")
        person.wait_text("Listening", "#live-state")
        sent = time.monotonic()
        _send(gateway, "failed")
        wait_for(lambda: len(_rows(person, "failed")) == 5, timeout=2, what="five events in Live events")
        print(f"live events: shown {time.monotonic() - sent:.2f} s after sending")
        wait_for(lambda: all("amp: dead-lettered (400) vendor.rejected" in r.text for r in _rows(person, "failed")),
                 timeout=30, what="each event's outcome")
        print(f"live events: outcomes {time.monotonic() - sent:.2f} s after sending")
        assert "Invalid API key: ***" in person.find("#live-rows").text and "revoked" not in person.page()
        _rows(person, "failed")[0].find_element("css selector", "summary").click()
        person.wait_text('"email": "ana@example.com"', "#live-rows")
        person.shot("live-events")
        person.find("#live-pause").click()
        person.wait_text("Paused", "#live-state")
        _send(gateway, "paused", 2)
        time.sleep(1.5)
        assert not _rows(person, "paused")  # nothing is added while paused

        # Delivery detail: the vendor's answer, scrubbed, and the error class
        person.open("/integrations/amp/delivery")
        person.wait_text("vendor.rejected", "#errors")
        assert "Invalid API key: ***" in person.text("#errors") and "400" in person.text("#requests")
        person.shot("delivery-detail")

        # the fix: the connection now names the right key; `up` starts the forwarder again with it
        person.open("/integrations/amp")
        person.wait_text("amp", "h1")
        fixed = str(person.find("#connection").get_attribute("value")).replace("AMP_OLD_KEY", "AMP_KEY")
        person.type("#connection", fixed)
        person.find("form[action='/integrations/amp/connection'] button[type=submit]").click()
        wait_for(lambda: any("forward-amp started again" in line for line in followed), timeout=60,
                 what="the forwarder started again with the new key")

        # re-inject: a dry run, then every letter once; a second re-injection sends nothing
        person.open("/deadletters/amp")
        person.wait_text("vendor.rejected")
        person.find("#dry-run-all").click()
        person.wait_text("Dry run (nothing written)", "#report")
        assert "re-injected into amp: 7" in person.find("#report").text  # the five and the two sent while paused
        person.find("#reinject-all").click()
        person.wait_text("Re-injected: amp's dead letters", "#report")
        person.shot("reinjected")
        person.find("#follow-delivery").click()  # its delivery, followed live from the receipts
        person.wait_text("written 7 of 7; delivered 7, dead-lettered 0", "#replay-state", timeout=60)
        person.wait_text("finished", "#replay-state")
        assert len(_at_stand_in(stand_in, "failed")) == 5 and len(_at_stand_in(stand_in, "paused")) == 2
        person.open("/deadletters/amp")
        person.wait_text("vendor.rejected")
        person.find("#reinject-all").click()
        person.wait_text("skipped, re-injected before: 7", "#report")
        time.sleep(2)
        assert stand_in.duplicates == 0 and len(_at_stand_in(stand_in, "failed")) == 5, "exactly once"

        # a replay of a window: exactly the events sent in it, again, under the same messageIds
        _send(gateway, "before")
        wait_for(lambda: len(_at_stand_in(stand_in, "before")) == 5, timeout=60, what="five delivered")
        time.sleep(1)
        since = int(time.time() * 1000)
        _send(gateway, "window")
        wait_for(lambda: len(_at_stand_in(stand_in, "window")) == 5, timeout=60, what="five delivered")
        time.sleep(1)
        until = int(time.time() * 1000)
        _send(gateway, "after")
        wait_for(lambda: len(_at_stand_in(stand_in, "after")) == 5, timeout=60, what="five delivered")
        person.open("/replay?integration=amp")
        person.wait_text("Replay", "h1")
        person.type("form.replay input[name=since]", str(since))
        person.type("form.replay input[name=until]", str(until))
        person.type("form.replay input[name=rate]", "2")
        person.find("#replay-dry-run").click()
        person.wait_text("events: 5", "#report")
        assert "deduplicates on insert_id" in person.find("#report").text
        person.find("#replay-start").click()
        wait_for(lambda: re.search(r"running: written [1-4] of 5", person.text("#replay-state")) is not None,
                 timeout=20, what="the replay under way")  # two a second: the progress is seen moving
        person.shot("replay")
        person.wait_text("finished", "#replay-state", timeout=60)
        person.wait_text("written 5 of 5; delivered 5, dead-lettered 0", "#replay-state", timeout=30)
        twice = {k for k, n in stand_in.keys.items() if n == 2}
        assert twice == {f"window-{i}" for i in range(5)}, twice
        person.shot("replay-finished")

        # the overview after it all, from the heartbeats: what was delivered and dead-lettered in the last 5
        # minutes, the forwarder that had the old key stopped, the one with the new key alive
        person.open("/overview")
        person.wait_text("amp", "#overview-amp")
        person.wait_text("vendor.rejected", "#overview-amp", timeout=30)
        wait_for(lambda: re.search(r"alive .*delivered ([1-9]\d+)", person.text("#processes")) is not None,
                 timeout=30, what="the new forwarder's heartbeat")
        processes = person.text("#processes")
        assert "stopped" in processes and re.search(r"worker kafka engine .* alive", processes), processes
        person.shot("overview")
        person.open("/audit")
        person.wait_text("Audit log", "h1")
        text = person.page()
        for expected in ("amp: connection", "re-injected under revision", "replay of amp"):
            assert expected in text, expected

        # a viewer sees the screens and no control to re-inject or replay
        add_user(users, "vera", VIEWER, PASSWORD)
        _log_in_again(person, "vera")
        person.open("/deadletters/amp")
        person.wait_text("Dead letters", "h1")
        assert not person.all("#reinject-all") and not person.all("input[name=pick]")
        person.open("/replay")
        person.wait_text("can see replays but not start one")
        assert not person.all("#replay-start") and "finished" in person.find("#replays").text
        person.open("/live?integration=amp")
        person.wait_text("Listening", "#live-state")
        _send(gateway, "masked", 1)
        wait_for(lambda: len(_rows(person, "masked")) == 1, timeout=10, what="the viewer's live event")
        _rows(person, "masked")[0].find_element("css selector", "summary").click()
        assert "ana@example.com" not in person.find("#live-rows").text
        assert person.console_problems() == []
    finally:
        watcher.stop()
        stack.stop()
        stand_in.stop()
