"""The webhook's guard against server-side request forgery: a destination from config must not make
us call into our own network. https only unless allowed; no user info in the URL; every address the
host resolves to must be public unless private targets are allowed. Checked when the config is loaded
and again before each send (DNS may change in between); redirects are never followed (the runner)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from schemas.errors import ConfigurationError, FinalError

Resolver = Callable[[str, int], list[str]]


def resolve(host: str, port: int) -> list[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})


class UnsafeDestination(FinalError):
    def __init__(self, message: str) -> None:
        super().__init__("webhook.unsafe_destination", message)


def check_url(url: str, *, allow_http: bool = False, allow_private: bool = False,
              resolver: Resolver | None = None) -> None:
    """Raise UnsafeDestination saying why `url` may not be called."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allow_http):
        raise UnsafeDestination(f"scheme {parts.scheme or '(none)'} is not allowed (https only unless allow_http)")
    if parts.username or parts.password:
        raise UnsafeDestination("credentials in the URL are not allowed; use the auth settings")
    host = parts.hostname
    if not host:
        raise UnsafeDestination("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeDestination("the URL's port is not a number") from None
    if allow_private:
        return
    try:
        addresses = (resolver or resolve)(host, port)
    except OSError:
        return  # not resolvable now (DNS may be down): the send fails on its own and is retried

    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global or ip.is_multicast:
            raise UnsafeDestination(f"host {host} resolves to a non-public address ({_kind(ip)}); "
                                    "set allow_private to call it")


def check_config(url: str, *, allow_http: bool, allow_private: bool, resolver: Resolver | None = None) -> None:
    """`check_url` at load time: a ConfigurationError so the forwarder refuses to start."""
    try:
        check_url(url, allow_http=allow_http, allow_private=allow_private, resolver=resolver)
    except UnsafeDestination as exc:
        raise ConfigurationError(f"webhook url: {exc.message}") from None


def _kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return "not global"
