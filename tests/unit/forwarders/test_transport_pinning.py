"""The transport connects to the address the destination guard judged, never to a name resolved again:
a resolver that answers a public address, then loopback (DNS rebinding) cannot lead to a loopback
connection. The name still goes in the Host header and in TLS (SNI), and the certificate is checked
against it. Local servers only; the resolver is injected."""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from forwarders.delivery import TransportError
from forwarders.ssrf import Allowance, UnsafeDestination
from forwarders.transport import HttpTransport
from forwarders.vendors.base import Request

SEEN: list[dict[str, Any]] = []
LOCAL = Allowance(http=True, private=True, networks=(ipaddress.ip_network("127.0.0.0/8"),))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        SEEN.append({"path": self.path, "host": self.headers.get("Host")})
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: Any) -> None:
        pass


def _serve(context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    SEEN.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, httpd.server_port


@pytest.fixture
def port() -> Iterator[int]:
    httpd, number = _serve()
    yield number
    httpd.shutdown()
    httpd.server_close()


class Flipping:
    """A resolver that answers a public address first and loopback after (a rebinding name)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return ["93.184.215.14"] if self.calls == 1 else ["127.0.0.1"]


def test_without_the_opt_in_loopback_is_refused_and_nothing_is_sent(port: int) -> None:
    transport = HttpTransport(1.0, 2.0)
    with pytest.raises(UnsafeDestination, match="loopback"):
        transport(Request(f"https://127.0.0.1:{port}/in", b"{}", (0,)))
    with pytest.raises(UnsafeDestination, match="loopback"):
        HttpTransport(1.0, 2.0, resolver=lambda h, p: ["127.0.0.1"])(Request(f"https://vendor.test:{port}/in",
                                                                             b"{}", (0,)))
    assert SEEN == []


def test_a_rebinding_name_never_leads_to_a_loopback_connection(port: int) -> None:
    flipping = Flipping()
    transport = HttpTransport(0.5, 0.5, allowance=Allowance(http=True), resolver=flipping)
    request = Request(f"http://rebind.test:{port}/in", b"{}", (0,))
    with pytest.raises(TransportError):  # connected to the public address it judged (no answer here)
        transport(request)
    assert flipping.calls == 1
    with pytest.raises(UnsafeDestination, match="loopback"):  # resolved again, judged again
        transport(request)
    assert SEEN == []
    transport.close()


def test_a_name_goes_to_its_checked_address_with_its_host_header(port: int) -> None:
    resolved: list[str] = []

    def local(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    transport = HttpTransport(1.0, 2.0, allowance=LOCAL, resolver=local)
    for _ in range(3):
        assert transport(Request(f"http://vendor.test:{port}/in?x=1", b"{}", (0,),
                                 {"Host": "other.test"})).status == 200
    assert [{"path": "/in?x=1", "host": f"vendor.test:{port}"}] * 3 == SEEN
    assert resolved == ["vendor.test"]  # kept for its ttl
    transport.close()


def test_an_unresolvable_host_is_not_sent_to_and_is_retried() -> None:
    def nothing(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    with pytest.raises(TransportError, match="does not resolve"):
        HttpTransport(1.0, 2.0, resolver=nothing)(Request("https://vendor.test/in", b"{}", (0,)))


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=vendor.test", "-addext", "subjectAltName=DNS:vendor.test",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    return tmp_path


def test_tls_to_a_pinned_address_sends_the_name_and_checks_the_certificate_against_it(certificate: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
    names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    httpd, port = _serve(context)
    try:
        transport = HttpTransport(2.0, 5.0, allowance=LOCAL, resolver=lambda h, p: ["127.0.0.1"],
                                  ca_certs=str(certificate / "cert.pem"))
        assert transport(Request(f"https://vendor.test:{port}/in", b"{}", (0,))).status == 200
        assert names == ["vendor.test"] and [{"path": "/in", "host": f"vendor.test:{port}"}] == SEEN
        with pytest.raises(TransportError):  # same address, another name: the certificate does not match
            transport(Request(f"https://other.test:{port}/in", b"{}", (0,)))
        assert len(SEEN) == 1
        transport.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
