"""The HTTP edge against a local server: what it sends, what it reads, what it refuses to do."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from forwarders.delivery import TransportError
from forwarders.ssrf import Allowance
from forwarders.transport import MAX_BODY, HttpTransport
from forwarders.vendors.base import Request

SEEN: list[dict[str, Any]] = []
# the local server is on loopback: these transports are allowed it, as an operator and a config would
LOCAL = Allowance(http=True, private=True, networks=(ipaddress.ip_network("127.0.0.0/8"),))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        SEEN.append({"path": self.path, "headers": dict(self.headers), "body": body,
                     "port": self.client_address[1]})
        if self.path == "/big":
            answer, status, extra = b"x" * (MAX_BODY + 10_000), 200, {}
        elif self.path == "/moved":
            answer, status, extra = b"", 302, {"Location": "http://127.0.0.1:1/internal"}
        else:
            answer, status, extra = b'{"ok":true}', 200, {"Retry-After": "3"}
        self.send_response(status)
        for key, value in {"Content-Length": str(len(answer)), **extra}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    SEEN.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_posts_the_body_and_headers_and_reuses_the_connection(server: str) -> None:
    transport = HttpTransport(1.0, 2.0, allowance=LOCAL)
    request = Request(f"{server}/ok", b'{"a":1}', (0,), {"Content-Type": "application/json", "X-Key": "k"})
    first, second = transport(request), transport(request)
    assert (first.status, first.body, second.status) == (200, b'{"ok":true}', 200)
    assert {k.lower(): v for k, v in first.headers.items()}["retry-after"] == "3"
    assert SEEN[0]["body"] == b'{"a":1}' and SEEN[0]["headers"]["X-Key"] == "k"
    assert SEEN[0]["headers"]["User-Agent"] == "eventrouter-forwarder"
    assert SEEN[0]["port"] == SEEN[1]["port"]  # keep-alive: one connection
    transport.close()


def test_a_long_answer_is_cut_and_its_connection_not_used_again(server: str) -> None:
    transport = HttpTransport(1.0, 2.0, allowance=LOCAL)
    answer = transport(Request(f"{server}/big", b"{}", (0,)))
    assert answer.status == 200 and len(answer.body) == MAX_BODY
    assert transport(Request(f"{server}/ok", b"{}", (0,))).body == b'{"ok":true}'
    assert SEEN[0]["port"] != SEEN[1]["port"]
    transport.close()


def test_redirects_are_not_followed(server: str) -> None:
    answer = HttpTransport(1.0, 2.0, allowance=LOCAL)(Request(f"{server}/moved", b"{}", (0,)))
    assert answer.status == 302 and len(SEEN) == 1


def test_no_answer_is_a_transport_error_naming_only_the_host() -> None:
    with pytest.raises(TransportError, match=r"no answer from 127\.0\.0\.1:9") as caught:
        HttpTransport(0.5, 0.5, allowance=LOCAL)(Request("http://127.0.0.1:9/path?token=secret", b"{}", (0,)))
    assert "secret" not in str(caught.value)
