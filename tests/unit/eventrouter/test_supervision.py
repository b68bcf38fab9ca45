"""`up`'s supervision without a broker: a child that keeps exiting is started again with a capped
back-off for ever and reported, never given up; the progress line and `up.json` say what is failing
and since when the broker has not answered; `eventrouter status` without a broker says so in one line."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from eventrouter.cli import main
from eventrouter.environment import SET_NAMES_ENV
from eventrouter.progress import Lane, Progress, read_snapshot, write_snapshot
from eventrouter.stack import Stack, free_port
from schemas import Topics

CONFIG = """
pipelines: [{name: web, write_keys: [wk], integrations: [amp]}]
integrations: [{name: amp, kind: amplitude, playbook: "starter:amplitude", connection: {api_key: "${K}"}}]
"""


def _stack(tmp_path: Path) -> Stack:
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "logs").mkdir()
    stack = Stack("127.0.0.1:9", Topics("t"), tmp_path / "c.yaml", tmp_path / "logs", gateway_port=None)
    stack.first_delay_s, stack.max_delay_s = 0.2, 0.8
    return stack


def _poll(stack: Stack, until: float, lines: list[str]) -> None:
    while time.monotonic() < until:
        lines += stack.revive()
        time.sleep(0.05)


def test_a_child_that_keeps_exiting_is_retried_with_capped_back_off_for_ever(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    stack._spawn("forward-bad", ["no-such-command"])  # argparse refuses it: exit 2, at once, every time
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while stack.failures.get("forward-bad", 0) < 6 and time.monotonic() < deadline:
            _poll(stack, time.monotonic() + 0.2, lines)
        assert stack.failures["forward-bad"] >= 6, lines  # past the old limit of three: still retried
        delays = [float(d) for d in re.findall(r"starting it again in ([\d.]+) s", "\n".join(lines))]
        assert delays[:4] == [0, 0, 1, 1]  # 0.2, 0.4, 0.8 (the cap), 0.8: rounded to whole seconds
        assert all("exited (2)" in line for line in lines if "starting it again" in line)
        assert stack.exited() and stack.exited()[0].startswith("forward-bad (exit 2, log ")
        failing = stack.failing()
        assert len(failing) == 1 and re.match(r"forward-bad \(exit 2, \d+ exits in a row, (retrying in|started "
                                              r"again) .*log .*forward-bad\.log\)", failing[0]), failing
        stack.write_metrics()  # what a scraper of up.prom reads: which child fails, how often restarted
        metrics = (tmp_path / "logs" / "up.prom").read_text()
        assert 'eventrouter_up_child_failing{role="forward-bad"} 1.0' in metrics, metrics
        restarts = re.search(r'eventrouter_up_child_restarts\{role="forward-bad"\} ([\d.]+)', metrics)
        assert restarts and float(restarts[1]) >= 5, metrics
        assert "eventrouter_up_broker_unreachable 0.0" in metrics
    finally:
        stack.stop()


def test_a_child_that_stayed_up_is_started_again_at_once_and_forgiven(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    stack.healthy_after_s = 0.0  # every run counts as healthy: each exit starts the back-off anew
    stack._spawn("forward-flaky", ["no-such-command"])
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while stack.restarts.get("forward-flaky", 0) < 3 and time.monotonic() < deadline:
            _poll(stack, time.monotonic() + 0.2, lines)
        delays = re.findall(r"starting it again in ([\d.]+) s \((\d+) exits", "\n".join(lines))
        assert delays and all(n == "1" for _d, n in delays), lines
    finally:
        stack.stop()


def test_broker_unreachable_is_in_the_progress_line_and_the_snapshot(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    started = time.time()
    progress = stack.progress()  # nothing listens on 127.0.0.1:9: the account goes on without the broker
    assert progress.broker_down_since is not None and progress.broker_down_since >= started - 1
    line = progress.line(now=progress.broker_down_since + 17)
    assert re.match(r"broker unreachable since \d\d:\d\d:\d\d \(17 s\)  \|  produced 0  read 0  rejected before "
                    r"routing 0  duplicates 0  \|  routed>delivered: amp 0>0$", line), line
    assert stack.progress().broker_down_since == progress.broker_down_since  # since the first time
    write_snapshot(stack.folder, progress, bootstrap=stack.bootstrap, prefix="t")
    snapshot = read_snapshot(stack.folder, "t")
    assert snapshot is not None and snapshot.pid == os.getpid() and snapshot.progress == progress
    assert read_snapshot(stack.folder, "other-prefix") is None


def test_the_progress_line_names_each_stage() -> None:
    progress = Progress(produced=12, read=12, invalid=1, deduplicated=2,
                        lanes={"amp": Lane(routed=8, failed=1, delivered=8)},
                        failing=["forward-hook (exit 1, 4 exits in a row, retrying in 8 s, log x)"])
    assert progress.line() == ("produced 12  read 12  rejected before routing 1  duplicates 2  |  routed>delivered: "
                               "amp 8>8 playbook errors 1  |  failing: forward-hook (exit 1, 4 exits in a row, "
                               "retrying in 8 s, log x)")


def test_status_without_a_broker_says_which_address_in_one_line_within_its_timeout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTROUTER_HOME", str(tmp_path))
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    assert main(["status", "--bootstrap-servers", address, "--timeout", "2"]) == 1
    took = time.monotonic() - started
    captured = capsys.readouterr()
    assert captured.err.strip() == (f"eventrouter: cannot reach the Kafka broker at {address}: no metadata within "
                                    "2 s (Failed to get metadata: Local: Broker transport failure)"), captured
    assert took < 10, took


def test_status_without_a_broker_still_shows_what_up_counted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(produced=10, read=10, invalid=1, deduplicated=3, lanes={"amp": Lane(routed=6, delivered=6)},
                        broker_down_since=time.time() - 5)
    write_snapshot(tmp_path, progress, bootstrap="x", prefix="eventrouter")
    assert main(["status", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--timeout", "1",
                 "--logs", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "workers: read 10 = rejected before routing 1 + duplicates dropped 3 + routable 6" in out, out
    assert "amp: routed 6, filtered 0, playbook errors 0, delivered 6, dead-lettered 0" in out, out
    assert "broker unreachable since" in out


def test_a_new_revision_starts_stops_and_restarts_exactly_the_forwarders_it_changes() -> None:
    from eventrouter.stack import delivered_specs, forwarder_plan
    from schemas.config import parse_config

    def config(text: str) -> dict[str, str]:
        return delivered_specs(parse_config(text))

    base = ("pipelines: [{name: web, write_keys: [wk], integrations: [amp, mp]}]\nintegrations:\n"
            "  - {name: amp, kind: amplitude, playbook: 'starter:amplitude', connection: {api_key: '${K}'}}\n"
            "  - {name: mp, kind: mixpanel, playbook: 'starter:mixpanel', connection: "
            "{project_id: '1', username: u, secret: '${S}'}}\n")
    running = config(base)
    assert set(running) == {"amp", "mp"}
    assert forwarder_plan(running, config(base)) == (set(), set(), set())  # the same revision again
    playbook_only = base.replace("'starter:amplitude'", "{filter: {deny: {event: [x]}}}")
    assert forwarder_plan(running, config(playbook_only)) == (set(), set(), set())  # the worker's business
    moved = base.replace("api_key: '${K}'", "api_key: '${K2}'")
    assert forwarder_plan(running, config(moved)) == (set(), {"amp"}, set())
    off = base.replace("{name: mp, kind", "{name: mp, enabled: false, kind")
    assert forwarder_plan(running, config(off)) == (set(), set(), {"mp"})
    added = base.replace("integrations: [amp, mp]", "integrations: [amp, mp, hook]") + \
        "  - {name: hook, kind: webhook, playbook: 'starter:webhook', connection: {url: 'https://h.example/x'}}\n"
    assert forwarder_plan(running, config(added)) == ({"hook"}, set(), set())
    unrouted = base.replace("integrations: [amp, mp]", "integrations: [amp]")
    assert forwarder_plan(running, config(unrouted)) == (set(), set(), {"mp"})


def test_the_console_learns_which_names_are_set_where_forwarders_start_and_no_value(tmp_path: Path) -> None:
    stack = _stack(tmp_path)
    stack.env = {"K": "secret-value", "LATER_KEY": "another-secret", "EMPTY": "", "PATH": "/usr/bin"}
    names = stack.environment(["console"])[SET_NAMES_ENV].split(",")
    assert "K" in names and "LATER_KEY" in names and "EMPTY" not in names  # a later integration's name too
    assert "secret-value" not in str(stack.environment(["console"]).get(SET_NAMES_ENV))
    assert "K" not in stack.environment(["console"])  # the console never gets a vendor's value
