"""The HTTP edge: one `requests.Session` per integration, explicit connect and read timeouts, no
redirects followed, no retries of its own (forwarders/delivery.py decides those)."""

from __future__ import annotations

from typing import Final

import requests
from requests.adapters import HTTPAdapter

from forwarders.delivery import Answer, TransportError
from forwarders.vendors.base import Request

MAX_BODY: Final = 256_000  # what we read of an answer at most


class HttpTransport:
    def __init__(self, connect_timeout_s: float, read_timeout_s: float, pool_size: int = 8,
                 user_agent: str = "eventrouter-forwarder") -> None:
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = user_agent
        self.session.trust_env = False  # no proxy or netrc from the environment: the config says where we post

    def __call__(self, request: Request) -> Answer:
        try:
            response = self.session.request(request.method, request.url, data=request.body,
                                            headers=dict(request.headers), timeout=self.timeout,
                                            allow_redirects=False, stream=True)
            try:
                body = response.raw.read(MAX_BODY, decode_content=True) or b""
            finally:
                response.close()
        except requests.RequestException as exc:
            raise TransportError(f"{type(exc).__name__}: no answer from {_host(request.url)}") from None
        return Answer(response.status_code, dict(response.headers), body)

    def close(self) -> None:
        self.session.close()


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc or "?"
