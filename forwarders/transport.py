"""The HTTP edge: urllib3 connection pools per integration, explicit connect and read timeouts, no
redirects followed, no retries of its own (forwarders/delivery.py decides those), no proxy or netrc
from the environment (the config says where we post), certificates checked against certifi's bundle
(what requests uses).

Every request's URL passes the destination guard (forwarders/ssrf.py) here, whatever vendor built it:
the host is resolved once, every address judged, and the connection made to the judged address (a pool
per address), never to a name urllib3 would resolve again (DNS rebinding). The name still goes in the
Host header and in TLS (SNI), and the certificate is verified against it. A refused destination is a
FinalError (dead-lettered, `forwarder.unsafe_destination`); a host that does not resolve is not sent
to (a TransportError: retried). Resolved addresses are kept `resolve_ttl_s`, and forgotten when a
connection to them fails.

urllib3 rather than a `requests.Session` (requests is urllib3 underneath): measured against a local
server, a request through requests cost 761 us of CPU and through urllib3 199 us; a forwarder sends
each partition's batch every linger (120 requests a second at 6 partitions and 50 ms), and in the
whole-chain benchmark requests' own overhead was ~14 us per event in each forwarder.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Final

import certifi
import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from forwarders.delivery import Answer, TransportError
from forwarders.ssrf import Address, Allowance, Resolver, Target, Unresolvable, resolve, resolve_checked
from forwarders.vendors.base import Request

MAX_BODY: Final = 256_000  # what we read of an answer at most
MAX_POOLS: Final = 4       # destinations (host, port, address) kept open at once


class HttpTransport:
    def __init__(self, connect_timeout_s: float, read_timeout_s: float, pool_size: int = 8,
                 user_agent: str = "eventrouter-forwarder", *, allowance: Allowance | None = None,
                 resolver: Resolver | None = None, ca_certs: str | None = None,
                 resolve_ttl_s: float = 30.0) -> None:
        self.timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self.user_agent = user_agent
        self.allowance = allowance or Allowance()  # the default reaches public https addresses only
        self.resolver = resolver
        self.ca_certs = ca_certs or certifi.where()
        self.pool_size = pool_size
        self.resolve_ttl_s = resolve_ttl_s
        self._lock = threading.Lock()
        self._pools: OrderedDict[tuple[str, str, int, str], HTTPConnectionPool] = OrderedDict()
        self._resolved: dict[tuple[str, int], tuple[float, list[str]]] = {}

    def __call__(self, request: Request) -> Answer:
        target, address = self._destination(request.url)  # UnsafeDestination (final) goes up as is
        pool = self._pool(target, address)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        try:
            response = pool.urlopen(
                request.method, target.path, body=request.body,
                headers={"User-Agent": self.user_agent, **headers, "Host": target.host_header},
                timeout=self.timeout, redirect=False, retries=False, preload_content=False,
                assert_same_host=False)
            try:
                body = response.read(MAX_BODY, decode_content=True) or b""
                unread = bool(response.read(1))
            except BaseException:
                response.close()
                raise
            if unread:  # an answer longer than we read: its connection cannot be used again
                response.close()
            else:
                response.release_conn()
        except (HTTPError, OSError) as exc:
            self._forget(target)
            raise TransportError(f"{type(exc).__name__}: no answer from {_shown(target)}") from None
        return Answer(response.status, dict(response.headers), body)

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
            self._resolved.clear()
        for pool in pools:
            pool.close()

    def _destination(self, url: str) -> tuple[Target, Address]:
        """The URL's target and the checked address to connect to (the host resolved at most once a ttl;
        what is kept is judged again each time, a cheap check)."""
        now = time.monotonic()

        def resolver(host: str, port: int) -> list[str]:
            with self._lock:
                kept = self._resolved.get((host, port))
            if kept is not None and kept[0] > now:
                return kept[1]
            return (self.resolver or resolve)(host, port)

        try:
            target, addresses = resolve_checked(url, self.allowance, resolver)
        except Unresolvable as exc:
            raise TransportError(str(exc)) from None
        with self._lock:
            kept = self._resolved.get((target.host, target.port))
            if kept is None or kept[0] <= now:
                self._resolved[(target.host, target.port)] = (now + self.resolve_ttl_s, [str(a) for a in addresses])
        return target, addresses[0]

    def _forget(self, target: Target) -> None:
        with self._lock:
            self._resolved.pop((target.host, target.port), None)

    def _pool(self, target: Target, address: Address) -> HTTPConnectionPool:
        key = (target.scheme, target.host, target.port, str(address))
        evicted = []
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            if target.scheme == "https":
                pool = HTTPSConnectionPool(
                    str(address), target.port, maxsize=self.pool_size, retries=False, timeout=self.timeout,
                    cert_reqs="CERT_REQUIRED", ca_certs=self.ca_certs, assert_hostname=target.host,
                    server_hostname=target.host)
            else:
                pool = HTTPConnectionPool(str(address), target.port, maxsize=self.pool_size, retries=False,
                                          timeout=self.timeout)
            self._pools[key] = pool
            while len(self._pools) > MAX_POOLS:
                evicted.append(self._pools.popitem(last=False)[1])
        for old in evicted:  # a request under way on it finishes; its connection is then closed
            old.close()
        return pool


def _shown(target: Target) -> str:
    return f"[{target.host}]:{target.port}" if ":" in target.host else f"{target.host}:{target.port}"
