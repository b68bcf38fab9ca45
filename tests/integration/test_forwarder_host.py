"""Many integrations in one forwarder process (`eventrouter forward A B C ...`, forwarders/host.py): a
vendor that hangs and one that answers 500 delay none of the others, and deliver everything once they
are well again; one integration that cannot start leaves the others running."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from schemas import Topics
from streams.metrics import scrape
from tests.figures import Figures
from tests.integration.forwarder_helpers import wait_for, write_outbound
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.vendor_cases import SECRETS, VendorCase, case
from tests.integration.worker_helpers import LoggedProcess, free_port

HOSTED = ["amplitude", "mixpanel", "posthog", "meta_capi", "braze", "webhook"]  # amplitude hangs, mixpanel 500s
EVENTS = 300


def _config(cases: dict[str, VendorCase], folder: Path, extra: str = "") -> Path:
    lines = ["pipelines:", f"  - {{name: web, write_keys: [wk], integrations: [{', '.join(cases)}]}}", "integrations:"]
    for kind, made in cases.items():
        connection = made.connection_yaml.replace("${SECRET}", f"${{SECRET_{kind.upper()}}}")
        lines += [f"  - name: {kind}", f"    kind: {kind}", f"    connection: {connection}",
                  "    delivery: {linger_ms: 50, timeout_s: 5, min_backoff_s: 0.5}", f'    playbook: "starter:{kind}"']
    path = folder / "eventrouter.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _send(bootstrap: str, topics: Topics, cases: dict[str, VendorCase], n: int) -> dict[str, list[str]]:
    """n events to each integration's topic, as the router writes them; their messageIds per integration."""
    sent = {}
    for kind, made in cases.items():
        ids = [f"{kind}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]
        payloads = [{**made.payload(i, m), "_messageId": m} for i, m in enumerate(ids)]
        write_outbound(bootstrap, topics, kind, kind, payloads)
        sent[kind] = ids
    return sent


def _holds(made: VendorCase, ids: list[str]) -> Callable[[], bool]:
    return lambda: set(made.accepted_ids()) >= set(ids)


def _counted(port: int, kind: str, n: int) -> Callable[[], bool]:
    return lambda: scrape(port).get(f'eventrouter_forwarder_delivered_total{{integration="{kind}"}}') == n


def _host(bootstrap: str, prefix: str, config: Path, names: list[str], folder: Path, *, env: dict[str, str]
          ) -> tuple[LoggedProcess, int]:
    port = free_port()
    return LoggedProcess(["-v", "forward", *names, "--bootstrap-servers", bootstrap, "--topic-prefix", prefix,
                          "--metrics-port", str(port), "--partitions", "3", "--config", str(config),
                          "--data-dir", str(folder / "host-data")], folder / "host.log", env), port


def test_a_hung_vendor_and_a_failing_one_delay_no_other_integration_of_the_process(
        bootstrap: str, tmp_path: Path, figures: Figures) -> None:
    cases = {kind: case(kind) for kind in HOSTED}
    cases["amplitude"].stand_in.hang(10_000, 30.0)
    cases["mixpanel"].stand_in.fail(100_000, 500)
    topics = fresh_topics(bootstrap)
    sent = _send(bootstrap, topics, cases, EVENTS)
    env = {f"SECRET_{kind.upper()}": SECRETS[kind] for kind in HOSTED}
    host, port = _host(bootstrap, topics.prefix, _config(cases, tmp_path), HOSTED, tmp_path, env=env)
    healthy = [k for k in HOSTED if k not in ("amplitude", "mixpanel")]
    try:
        started = time.monotonic()
        took = {}
        for kind in healthy:
            wait_for(_holds(cases[kind], sent[kind]), timeout=60, what=f"{kind}'s events")
            took[kind] = round(time.monotonic() - started, 1)
        assert not cases["amplitude"].stand_in.accepted and not cases["mixpanel"].stand_in.accepted
        assert cases["amplitude"].stand_in.requests >= 1 and 500 in cases["mixpanel"].stand_in.statuses
        for kind in healthy:  # one endpoint, every integration's series (counted once the 2xx is read)
            wait_for(_counted(port, kind, EVENTS), timeout=30, what=f"{kind}'s delivered count")
        # well again: what waited is delivered, nothing lost
        cases["amplitude"].stand_in.clear()
        cases["mixpanel"].stand_in.clear()
        for kind in ("amplitude", "mixpanel"):
            wait_for(_holds(cases[kind], sent[kind]), timeout=120, what=f"{kind}'s events after it recovered")
        figures.report("one process, six integrations: one vendor hanging, one answering 500",
                       others_delivered_in_s=took, lost=0)
    finally:
        code = host.stop(signal.SIGTERM)
        for made in cases.values():
            made.stand_in.stop()
    assert code == 0, host.log()
    for kind, made in cases.items():  # each once: by messageId (the Braze stand-in's own key ignores it)
        assert sorted(made.accepted_ids()) == sorted(sent[kind]), kind
    assert max(took.values()) < 30, took


def test_an_integration_that_cannot_start_leaves_the_others_delivering(bootstrap: str, tmp_path: Path) -> None:
    cases = {kind: case(kind) for kind in ("posthog", "webhook")}
    topics = fresh_topics(bootstrap)
    sent = _send(bootstrap, topics, cases, 50)
    env = {"SECRET_POSTHOG": SECRETS["posthog"]}  # the webhook's secret is not set: it cannot start
    host, port = _host(bootstrap, topics.prefix, _config(cases, tmp_path), list(cases), tmp_path, env=env)
    try:
        wait_for(_holds(cases["posthog"], sent["posthog"]), timeout=60, what="posthog's events")
        wait_for(lambda: scrape(port).get('eventrouter_forwarder_failing{integration="webhook"}') == 1, timeout=30,
                 what="the webhook reported failing")
        assert "webhook: cannot start" in host.log()
    finally:
        code = host.stop(signal.SIGTERM)
        for made in cases.values():
            made.stand_in.stop()
    assert code == 0, host.log()
    assert not cases["webhook"].stand_in.accepted
