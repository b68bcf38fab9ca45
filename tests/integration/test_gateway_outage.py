"""The gateway and the worker while the broker is frozen, stopped or absent: a 503 before clients give up,
every event left unconfirmed accounted for, and one clear line per change of state in the logs.

Runs on a broker of its own, so freezing and stopping it disturbs no other test.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from eventrouter.dev.localkafka import LocalKafka
from schemas import EventCodec, Topics
from tests.conftest import _start
from tests.integration.kafka_helpers import consume_all, fresh_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
CLIENT_TIMEOUT_S = 10.0  # analytics-node httpRequestTimeout, analytics-go's http.Client: 10 s


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = _start(Path(tmp_path_factory.mktemp("kafka-gateway-outage")), nodes=1)
    yield kafka
    kafka.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """An `eventrouter` command with its log in a file (a pipe nobody reads would fill and block it)."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "eventrouter", *args], cwd=REPO,
                                         stdout=subprocess.DEVNULL, stderr=out)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(30)


def _gateway(tmp_path: Path, bootstrap: str, topics: Topics, *extra: str) -> tuple[Process, str]:
    port = _free_port()
    gateway = Process(tmp_path / f"gateway-{port}.log", "gateway", "--bootstrap-servers", bootstrap, "--topic-prefix",
                      topics.prefix, "--write-key", "wk_gateway", "--port", str(port), *extra)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: _answers(url), 30, "the gateway listening", gateway)
    return gateway, url


def _answers(url: str) -> bool:
    try:
        requests.get(f"{url}/health", timeout=2)
        return True
    except requests.ConnectionError:
        return False


def _wait(condition: Callable[[], bool], timeout: float, what: str, process: Process | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.proc.poll() is not None:
            raise AssertionError(f"exited while waiting for {what}:\n{process.text()[-3000:]}")
        assert time.monotonic() < deadline, f"no {what} after {timeout} s" + (
            f":\n{process.text()[-3000:]}" if process else "")
        time.sleep(0.2)


def _metrics(url: str) -> dict[str, float]:
    text = requests.get(f"{url}/metrics", timeout=10).text
    return {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
            if line.startswith("eventrouter_gateway_") and " " in line}


def _batch(prefix: str, count: int) -> dict[str, object]:
    return {"batch": [{"type": "track", "userId": f"u{i % 5}", "event": "Outage Probe", "messageId": f"{prefix}-{i}"}
                      for i in range(count)]}


def _post(url: str, body: dict[str, object]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    reply = requests.post(f"{url}/v1/batch", json=body, auth=("wk_gateway", ""), timeout=60)
    return reply, time.monotonic() - started


def _node_pid(kafka: LocalKafka) -> int:
    pid = kafka.status().nodes[0].pid
    assert pid is not None
    return pid


def test_frozen_broker_gets_503_before_client_timeouts_and_the_unconfirmed_are_counted(
        own_broker: LocalKafka, tmp_path: Path) -> None:
    bootstrap = own_broker.status().bootstrap
    assert bootstrap is not None
    topics = fresh_topics(bootstrap)
    gateway, url = _gateway(tmp_path, bootstrap, topics)
    try:
        assert _post(url, _batch("before", 5))[0].status_code == 200
        pid = _node_pid(own_broker)
        os.kill(pid, signal.SIGSTOP)
        try:
            reply, took = _post(url, _batch("frozen", 20))
            assert reply.status_code == 503, reply.text
            assert reply.headers["Retry-After"] == "5"
            assert 4.5 <= took < 5.0 + 3.0 < CLIENT_TIMEOUT_S, took  # the documented 5 s default, plus slack
            counts = _metrics(url)
            assert counts["eventrouter_gateway_unconfirmed_total"] == 20
            assert counts["eventrouter_gateway_unconfirmed_pending"] == 20
        finally:
            os.kill(pid, signal.SIGCONT)
        _wait(lambda: _metrics(url)["eventrouter_gateway_unconfirmed_pending"] == 0, 90,
              "every unconfirmed event settled", gateway)
        counts = _metrics(url)
        assert counts["eventrouter_gateway_late_acked_total"] + counts["eventrouter_gateway_failed_total"] == 20
        assert counts["eventrouter_gateway_late_acked_total"] == 20  # frozen well inside the delivery timeout
        retried, _took = _post(url, _batch("frozen", 20))  # the client's retry: the same messageIds
        assert retried.status_code == 200, retried.text
        counts = _metrics(url)
        assert counts["eventrouter_gateway_unavailable_total"] == 1
        assert counts["eventrouter_gateway_events_accepted_total"] == 25
        assert counts['eventrouter_gateway_requests_total{status="503"}'] == 1
    finally:
        assert gateway.stop() == 0
    codec = EventCodec()
    received = [codec.decode(m.value())["messageId"] for m in consume_all(bootstrap, topics.raw, 45, timeout=60)]
    assert {f"frozen-{i}" for i in range(20)} <= set(received)
    assert len(received) == 45  # each frozen event twice: late-acked, then retried (the worker's dedup drops one)
    log = gateway.text()
    assert "Traceback" not in log
    assert len(re.findall("kafka did not acknowledge within 5.0 s", log)) == 1, log
    assert len(re.findall(r"requests answered 503; 20 events unconfirmed at the answer: 20 acknowledged later, "
                          r"0 failed for good", log)) == 1, log


def test_with_no_broker_worker_and_gateway_say_so_once_then_carry_on_when_it_is_back(
        own_broker: LocalKafka, tmp_path: Path) -> None:
    bootstrap = own_broker.status().bootstrap
    assert bootstrap is not None
    topics = fresh_topics(bootstrap)
    own_broker.stop_node(1)
    gateway: Process | None = None
    worker: Process | None = None
    try:
        gateway, url = _gateway(tmp_path, bootstrap, topics, "--ack-timeout", "1")
        worker = Process(tmp_path / "worker.log", "worker", "--bootstrap-servers", bootstrap, "--topic-prefix",
                         topics.prefix, "--data-dir", str(tmp_path / "worker"))
        assert _post(url, _batch("down", 3))[0].status_code == 503
        time.sleep(8)  # librdkafka retries ~20 times a second per client meanwhile
        assert _post(url, _batch("down", 3))[0].status_code == 503
        assert worker.proc.poll() is None, worker.text()  # it waits, it does not exit
        for process, what in ((gateway, "the gateway answers 503"), (worker, "the worker waits for it")):
            log = process.text()
            unreachable = re.findall(rf"WARNING schemas.runtime.kafka_watch broker {re.escape(bootstrap)} "
                                     rf"unreachable since "
                                     rf"[0-9:]+ \(Connect to ipv4#{re.escape(bootstrap)} failed: Connection "
                                     rf"refused\); {what}", log)
            assert len(unreachable) == 1, log
            assert "Traceback" not in log and len(log.splitlines()) <= 6, log
        own_broker.restart_node(1)
        _wait(lambda: "assigned raw partitions" in worker.text(), 120, "the worker at work", worker)
        _wait(lambda: f"broker {bootstrap} reachable again" in gateway.text(), 60, "the gateway's line", gateway)
        assert f"broker {bootstrap} reachable again" in worker.text()
        _wait(lambda: _post(url, _batch("back", 3))[0].status_code == 200, 60, "a 200 again", gateway)
    finally:
        if own_broker.status().nodes[0].pid is None or not own_broker.status().nodes[0].running:
            own_broker.restart_node(1)
        for process in (gateway, worker):
            if process is not None:
                process.stop()
    for process in (gateway, worker):
        assert process is not None and "Traceback" not in process.text(), process.text() if process else ""
