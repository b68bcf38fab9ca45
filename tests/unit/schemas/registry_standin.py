"""A local stand-in for a Confluent-compatible schema registry: the two endpoints the codec uses."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Registry:
    def __init__(self) -> None:
        self.schemas: dict[int, str] = {}
        self.ids: dict[str, int] = {}
        self.lock = threading.Lock()

    def register(self, text: str) -> int:
        with self.lock:
            if text not in self.ids:
                self.ids[text] = len(self.ids) + 1
                self.schemas[self.ids[text]] = text
            return self.ids[text]


@contextmanager
def registry_standin() -> Iterator[tuple[str, _Registry]]:
    state = _Registry()

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) != 3 or parts[0] != "subjects" or parts[2] != "versions":
                self._send(404, {"error_code": 404, "message": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._send(200, {"id": state.register(body["schema"])})

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and int(parts[2]) in state.schemas:
                self._send(200, {"schema": state.schemas[int(parts[2])]})
            else:
                self._send(404, {"error_code": 40403, "message": "Schema not found"})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
