"""The gateway under hostile clients, as a real process on a real broker: huge batches of tiny items,
unknown writeKeys in a flood, slow or lying connections, odd gzip, numbers and ids no client should send."""

from __future__ import annotations

import base64
import gzip
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests

from schemas import Topics
from tests.integration.kafka_helpers import consume_all, fresh_topics

pytestmark = pytest.mark.kafka
REPO = Path(__file__).resolve().parents[2]
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
AUTH = "Basic " + base64.b64encode(b"wk_hostile:").decode()


class Gateway:
    def __init__(self, url: str, port: int, topics: Topics, log: Path) -> None:
        self.url, self.port, self.topics, self.log = url, port, topics, log

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.settimeout(30)
        return sock


@pytest.fixture(scope="module")
def gateway(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    topics = fresh_topics(bootstrap)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("gateway") / "stderr.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "eventrouter", "gateway", "--bootstrap-servers", bootstrap,
                                 "--topic-prefix", topics.prefix, "--write-key", "wk_hostile", "--port", str(port),
                                 "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT)],
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/health", timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "gateway did not start"
            time.sleep(0.1)
    yield Gateway(url, port, topics, log)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(30)


def _post(gateway: Gateway, path: str, data: bytes, **headers: str) -> requests.Response:
    return requests.post(gateway.url + path, data=data, headers={"Authorization": AUTH, **headers}, timeout=30)


def _closed_after(sock: socket.socket, trickle: bytes, every: float = 0.25) -> tuple[float, bytes]:
    """Send `trickle` a byte at a time until the server closes the connection: (seconds it took, what it said)."""
    started = time.monotonic()
    answer = b""
    sock.setblocking(False)
    for byte in trickle:
        try:
            chunk = sock.recv(65536)
            if not chunk:
                return time.monotonic() - started, answer
            answer += chunk
        except BlockingIOError:
            pass
        except ConnectionError:
            return time.monotonic() - started, answer
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionError):
            return time.monotonic() - started, answer
        time.sleep(every)
    raise AssertionError(f"still open after {time.monotonic() - started:.1f} s")


def test_a_batch_over_the_cap_is_refused_whole_and_one_at_the_cap_answered_briefly(bootstrap: str,
                                                                                   gateway: Gateway) -> None:
    huge = _post(gateway, "/v1/batch", b'{"batch": [' + b",".join([b"1"] * 100_000) + b"]}")
    assert (huge.status_code, huge.json()["code"]) == (400, "too_many_events")
    assert len(huge.content) < 1000
    at_cap = _post(gateway, "/v1/batch", orjson.dumps({"batch": [1] * 2500}))
    assert at_cap.status_code == 200
    answer = at_cap.json()
    assert (answer["accepted"], answer["rejectedCount"], len(answer["rejected"])) == (0, 2500, 100)
    assert len(at_cap.content) < 20_000
    # the refused request wrote nothing: only the 2,500 of the batch at the cap are dead letters
    assert len(consume_all(bootstrap, gateway.topics.invalid, 2500, timeout=60, settle=3)) == 2500


def test_an_unknown_header_write_key_is_refused_before_the_body_is_sent(gateway: Gateway) -> None:
    nope = base64.b64encode(b"nope:").decode()
    with gateway.connect() as sock:
        sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + nope.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: 400000\r\n\r\n")
        sock.settimeout(HEADER_TIMEOUT + BODY_TIMEOUT - 0.5)  # before the body timeout could answer instead
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_a_flood_of_refusals_logs_a_line_per_reason_per_interval(gateway: Gateway) -> None:
    def auth_lines() -> list[str]:
        return [line for line in gateway.log.read_text().splitlines() if "reason=auth" in line]

    def refused() -> None:
        reply = requests.post(f"{gateway.url}/v1/track", json={"userId": "u", "event": "E"}, auth=("nope", ""),
                              timeout=30)
        assert reply.status_code == 401

    before = len(auth_lines())
    for _ in range(50):
        refused()
    time.sleep(0.5)
    assert len(auth_lines()) - before <= 1  # one line per reason per 10 s, whatever the flood
    deadline = time.monotonic() + 30  # once the interval has passed, the next refusal's line counts the rest
    while not any("more refused" in line for line in auth_lines()[before:]):
        assert time.monotonic() < deadline, gateway.log.read_text()[-2000:]
        refused()
        time.sleep(1)
    left_out = int(auth_lines()[-1].split("(and ")[1].split()[0])
    assert left_out >= 49, auth_lines()[-1]  # the flood, less the one line it may have had
    assert "nope" not in gateway.log.read_text() and base64.b64encode(b"nope:").decode() not in \
        gateway.log.read_text()


def test_slow_headers_are_cut_off_at_the_header_timeout(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        took, _answer = _closed_after(sock, b"POST /v1/track HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000)
    assert HEADER_TIMEOUT - 0.5 < took < HEADER_TIMEOUT + 5


def test_an_idle_connection_is_closed_at_the_header_timeout(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - started < HEADER_TIMEOUT + 5


def test_a_slow_body_gets_408_and_the_connection_closed(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode() +
                     b"\r\nContent-Length: 1000\r\n\r\n")
        took, answer = _closed_after(sock, b" " * 1000)
    assert took < BODY_TIMEOUT + 5
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_a_content_length_longer_than_the_body_gets_408_in_time(gateway: Gateway) -> None:
    with gateway.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode() +
                     b"\r\nContent-Length: 100\r\n\r\n{\"userId\": \"u\"}")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert BODY_TIMEOUT - 0.5 < took < BODY_TIMEOUT + 5


def test_every_gzip_member_is_read_and_garbage_after_one_refused(gateway: Gateway) -> None:
    events = [{"type": "track", "userId": "u", "event": "E", "messageId": f"member-{i}"} for i in range(2)]
    text = orjson.dumps({"batch": events})
    half = len(text) // 2
    reply = _post(gateway, "/v1/batch", gzip.compress(text[:half]) + gzip.compress(text[half:]),
                  **{"Content-Encoding": "gzip"})
    assert (reply.status_code, reply.json()["accepted"]) == (200, 2)
    reply = _post(gateway, "/v1/batch", gzip.compress(text) + b"garbage", **{"Content-Encoding": "gzip"})
    assert (reply.status_code, reply.json()["code"]) == (400, "bad_gzip")


@pytest.mark.parametrize(("body", "code"), [
    (b'{"userId": "u", "event": "E", "properties": {"n": 1180591620717411303424}}', "invalid.unencodable"),
    (b'{"userId": "u\\u0000", "event": "E"}', "invalid.control_character"),
    (b'{"userId": "u", "event": "Signed\\nUp"}', "invalid.control_character"),
])
def test_numbers_beyond_64_bits_and_control_characters_in_ids_are_refused(gateway: Gateway, body: bytes,
                                                                          code: str) -> None:
    reply = _post(gateway, "/v1/track", body)
    assert (reply.status_code, reply.json()["code"]) == (400, code)
