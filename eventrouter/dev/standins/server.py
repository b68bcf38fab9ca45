"""A local HTTP server standing in for a vendor: it checks what the vendor checks, records what it
accepted, and can be scripted to fail (bursts of 5xx, 429 with Retry-After, hangs, slow answers,
413). Tests, benchmarks and the demo start them on 127.0.0.1 at a free port. Subclasses implement
`answer()`: the vendor's contract for one request."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson

log = logging.getLogger(__name__)


class _Listener(ThreadingHTTPServer):
    """A vendor's front end takes many connections at once: the standard library's backlog of 5 drops
    connection attempts when a forwarder opens 64 together, and a busy machine then times them out."""

    request_queue_size = 256
    daemon_threads = True


@dataclass(frozen=True, slots=True)
class Incoming:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]   # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


def json_answer(status: int, value: Any, headers: Mapping[str, str] | None = None) -> Answer:
    return Answer(status, orjson.dumps(value), {"Content-Type": "application/json", **(headers or {})})


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted answer: `status` (with headers and body), or `hang` seconds before answering."""

    status: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


class StandIn:
    """Subclasses set `name` and implement `answer(incoming) -> Answer`, calling `accept()` for what
    the vendor would keep, with the event's dedup key (None where the vendor has none).

    Each also says how to reach it and what to send it, so that the tests and the demo need no branch per
    vendor: `credential` (what it accepts by default), `settings()` and `path` (a connection to it),
    `sample()` and `carried()` (a payload that carries a messageId, and where it is), `spoil()` (one the
    vendor refuses), `freshen()`."""

    name = "vendor"
    credential: ClassVar[str] = "stand-in-secret"  # the secret it accepts unless made with another (6+ characters)
    path: ClassVar[str] = ""  # the vendor endpoint's path here: a connection's endpoint is url + path
    endpoint_key: ClassVar[str] = "endpoint"  # the connection key naming that endpoint

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        """The keys of a connection to this vendor beyond its endpoint, each credential `secret` (a value, or
        a `${ENV}` reference)."""
        raise NotImplementedError

    def connection(self, secret: str | None = None) -> dict[str, Any]:
        """A connection to this stand-in (plain http on loopback allowed), its credentials `secret` (by
        default the one it accepts)."""
        return {**self.settings(secret or self.credential), self.endpoint_key: self.url + self.path,
                "allow_http": True, "allow_private": True}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        """A payload the vendor accepts, as the starter kit makes them, for event `index` (a few users take
        turns), at `now_s`, carrying `message_id` where `carried()` finds it."""
        raise NotImplementedError

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        """The messageId an accepted event carries (where `sample()` put it)."""
        raise NotImplementedError

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        """`payload` (a `sample()`) made into one the vendor refuses for itself alone: answered as a per-event
        error beside the others of its request, or refused by the vendor module before sending."""
        raise NotImplementedError

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        """A payload (a starter kit's golden one) with its time moved to `now_s`, for a vendor that refuses
        events older than its window; the others return it as it is."""
        return payload

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.keys: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.requests = 0
        self.times: list[float] = []      # when each request arrived (time.monotonic)
        self.batches: list[int] = []      # events accepted per request
        self.delay = 0.0              # every answer this much later (a slow vendor)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._request = threading.local()  # events accepted by the request this thread answers
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- what the vendor keeps ----------------------------------------------------------------------
    def accept(self, event: dict[str, Any], key: str | None) -> None:
        with self._lock:
            self.accepted.append(event)
            if key is not None:
                self.keys[key] += 1
        self._request.accepted = getattr(self._request, "accepted", 0) + 1

    @property
    def duplicates(self) -> int:
        """Events accepted again under a dedup key the vendor already had (it would drop them)."""
        return sum(n - 1 for n in self.keys.values() if n > 1)

    def answer(self, incoming: Incoming) -> Answer:
        raise NotImplementedError

    # -- scripting ----------------------------------------------------------------------------------
    def fail(self, count: int, status: int, *, retry_after: float | None = None, body: bytes = b"") -> None:
        """The next `count` requests get `status` (with Retry-After if given), whatever they hold."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        with self._lock:
            self._faults.extend(Fault(status, headers, body) for _ in range(count))

    def hang(self, count: int, seconds: float) -> None:
        """The next `count` requests get no answer for `seconds` (then a 503)."""
        with self._lock:
            self._faults.extend(Fault(503, delay=seconds) for _ in range(count))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self.delay = 0.0

    # -- serving ------------------------------------------------------------------------------------
    def start(self, port: int = 0) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body in one send, no Nagle: else every answer waits out a 40 ms delayed ACK
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                incoming = Incoming("POST", parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                answer = stand_in.handle(incoming)
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _Listener(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"standin-{self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, incoming: Incoming) -> Answer:
        with self._lock:
            self.requests += 1
            self.times.append(time.monotonic())
            fault = self._faults.pop(0) if self._faults else None
        # counted per request, not as len(accepted) before and after: requests answered at the same time
        # would each count the other's events (a request of 2,000 beside one of 857 was counted as 2,857)
        self._request.accepted = 0
        pause = (fault.delay if fault else 0.0) + self.delay
        if pause:
            time.sleep(pause)
        if fault is not None and fault.status is not None:
            answer = Answer(fault.status, fault.body, fault.headers)
        else:
            try:
                answer = self.answer(incoming)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # a body the vendor cannot parse
                answer = json_answer(400, {"error": f"malformed request: {type(exc).__name__}"})
        with self._lock:
            self.statuses[answer.status] += 1
            self.batches.append(self._request.accepted)
        return answer
