"""The guard against server-side request forgery, for every vendor: a destination from config must not
make us call into our own network. Pure decisions here; forwarders/transport.py resolves a host once
through `resolve_checked` and connects to the checked address (never resolving it again).

The rules, for every URL a vendor module builds (its `endpoint`, a webhook's `url`):
- https only, unless the connection says `allow_http`; no user info, no backslash, whitespace or
  control characters, no IPv6 zone id (`[fe80::1%25lo]`), a numeric port.
- every address the host resolves to must be public. An address that embeds an IPv4 address is judged
  by the IPv4 address it embeds: IPv4-mapped `::ffff:0:0/96` and IPv4-compatible `::/96` (RFC 4291
  2.5.5), IPv4-translated `::ffff:0:0:0/96` (RFC 2765), NAT64 `64:ff9b::/96` (RFC 6052 2.1) and the
  local-use `64:ff9b:1::/48` (RFC 8215; every RFC 6052 2.2 layout a /48 or longer prefix may use),
  6to4 `2002::/16` (RFC 3056 2), Teredo `2001::/32` (RFC 4380 4: the server and the obfuscated client).
  "Public" is Python's `is_global` (the IANA IPv4 and IPv6 Special-Purpose Address Registries,
  https://www.iana.org/assignments/iana-ipv4-special-registry and iana-ipv6-special-registry) and not
  multicast. IPv4 written in decimal, octal or hex (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) is
  read the way inet_aton(3) reads it, as the resolver would.
- a non-public address is allowed only when the connection says `allow_private` AND the address lies
  in one of the operator's networks, `EVENTROUTER_PRIVATE_NETWORKS` (CIDRs, comma separated; empty by
  default): whoever writes the config cannot open the private network on their own.
- fail closed: a host that does not resolve is refused at send time (a retryable `Unresolvable`).

At validation (`check_literal`) nothing is looked up: a host written as an address, and `localhost`
names, are judged; a name is left to the send. Redirects are never followed (forwarders/transport.py).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from schemas.errors import ConfigurationError, FinalError, RetryableError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

ENV_VAR: Final = "EVENTROUTER_PRIVATE_NETWORKS"
REASON: Final = "forwarder.unsafe_destination"

_MAPPED = ipaddress.ip_network("::ffff:0:0/96")       # RFC 4291 2.5.5.2
_COMPATIBLE = ipaddress.ip_network("::/96")           # RFC 4291 2.5.5.1 (deprecated); :: and ::1 aside
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 2.1
_NAT64 = ipaddress.ip_network("64:ff9b::/96")         # RFC 6052 2.1, the well-known prefix
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215, local-use
_SIXTOFOUR = ipaddress.ip_network("2002::/16")        # RFC 3056 2
_TEREDO = ipaddress.ip_network("2001::/32")           # RFC 4380 4
_NUMERIC = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
_BAD_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


class UnsafeDestination(FinalError):
    """A URL we will not call: its events are dead-lettered (`forwarder.unsafe_destination`)."""

    def __init__(self, message: str) -> None:
        super().__init__(REASON, message)


class Unresolvable(RetryableError):
    """The host does not resolve now: nothing is sent (fail closed); retried like no answer."""


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one integration may reach: `http` and `private` from its connection, `networks` from the
    operator's environment (`EVENTROUTER_PRIVATE_NETWORKS`)."""

    http: bool = False
    private: bool = False
    networks: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """A URL taken apart: what we connect to (after resolving `host`) and what we say we call."""

    scheme: str
    host: str       # lower case, ASCII (IDNA), no brackets
    port: int
    path: str       # path and query, what goes on the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


def operator_networks(environ: Mapping[str, str] | None = None) -> tuple[Network, ...]:
    """The private networks the operator lets `allow_private` connections reach (ConfigurationError
    naming the variable for an entry that is not a CIDR)."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "")
    networks = []
    for entry in filter(None, (part.strip() for part in value.replace(" ", ",").split(","))):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigurationError(f"{ENV_VAR}: {entry!r} is not a network (CIDR, e.g. 10.1.0.0/16)") from None
    return tuple(networks)


def parse(url: str, allowance: Allowance) -> Target:
    """The URL's parts, or UnsafeDestination for a URL malformed or not allowed on its face."""
    if _BAD_CHARACTERS.search(url):
        raise UnsafeDestination("the URL holds whitespace, a backslash or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeDestination("the URL does not parse (its host or port)") from None
    if parts.scheme not in ("https", "http") or (parts.scheme == "http" and not allowance.http):
        raise UnsafeDestination(f"scheme {parts.scheme or '(none)'} is not allowed (https only unless allow_http)")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeDestination("credentials in the URL are not allowed; use the auth settings")
    host = parts.hostname
    if not host:
        raise UnsafeDestination("the URL has no host")
    if "%" in host:
        raise UnsafeDestination("a scoped IPv6 address (zone id) or a percent-encoded host is not allowed")
    try:
        host = host.rstrip(".").encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        raise UnsafeDestination("the URL's host is not a valid name") from None
    path = parts.path or "/"
    return Target(parts.scheme, host, port or (443 if parts.scheme == "https" else 80),
                  f"{path}?{parts.query}" if parts.query else path)


def literal_address(host: str) -> Address | None:
    """The address `host` is written as (`[::1]`, `127.1`, `2130706433`, `0x7f.0.0.1`), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    if _NUMERIC.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def embedded(ip: Address) -> list[Address]:
    """The addresses `ip` stands for: the IPv4 address(es) it embeds, else itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    value = int(ip)
    if ip in _MAPPED or ip in _TRANSLATED or ip in _NAT64 or (ip in _COMPATIBLE and value > 1):
        return [ipaddress.IPv4Address(value & 0xFFFF_FFFF)]
    if ip in _NAT64_LOCAL:  # RFC 6052 2.2: the IPv4 bits skip bits 64-71 ("u") for prefixes up to /64
        packed = ip.packed
        layouts = (packed[6:8] + packed[9:11], packed[7:8] + packed[9:12], packed[9:13], packed[12:16])
        return [ipaddress.IPv4Address(bytes(four)) for four in layouts]
    if ip in _SIXTOFOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFF_FFFF)]
    if ip in _TEREDO:
        server, client = ip.teredo or (None, None)
        return [a for a in (server, client) if a is not None]
    return [ip]


def judge(host: str, addresses: Iterable[Address], allowance: Allowance) -> None:
    """UnsafeDestination unless every address is public, or allowed private (connection and operator)."""
    for address in addresses:
        for ip in embedded(address):
            if ip.is_global and not ip.is_multicast:
                continue
            if allowance.private and any(ip.version == net.version and ip in net for net in allowance.networks):
                continue
            shown = f"{address}" + (f" (embeds {ip})" if ip != address else "")
            if not allowance.private:
                hint = f"set allow_private to call it, and the operator lists its network in {ENV_VAR}"
            else:
                hint = f"allow_private is set but {ENV_VAR} does not list its network"
            raise UnsafeDestination(f"host {host} resolves to a non-public address ({_kind(ip)}): {shown}; {hint}")


def check_literal(url: str, allowance: Allowance) -> Target:
    """What can be judged without DNS (validation, a forwarder's start): the URL's form, and a host
    written as an address or a `localhost` name."""
    target = parse(url, allowance)
    name = target.host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761 6.3: loopback, whatever DNS says
        judge(target.host, [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")], allowance)
    address = literal_address(target.host)
    if address is not None:
        judge(target.host, [address], allowance)
    return target


def resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order of preference."""
    seen: dict[str, None] = {}
    for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP):
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


def resolve_checked(url: str, allowance: Allowance, resolver: Resolver | None = None) -> tuple[Target, list[Address]]:
    """The URL's target and every address its host resolves to, all judged; the caller connects to
    these and only these. UnsafeDestination (final), or Unresolvable (retryable: fail closed)."""
    target = check_literal(url, allowance)
    address = literal_address(target.host)
    if address is not None:
        return target, [address]
    try:
        found = (resolver or resolve)(target.host, target.port)
        addresses = [ipaddress.ip_address(a) for a in found]
    except (OSError, UnicodeError, ValueError) as exc:
        raise Unresolvable(f"host {target.host} does not resolve ({type(exc).__name__}): not sent") from None
    if not addresses:
        raise Unresolvable(f"host {target.host} resolves to no address: not sent")
    if any(isinstance(a, ipaddress.IPv6Address) and a.scope_id for a in addresses):
        raise UnsafeDestination(f"host {target.host} resolves to a scoped (link-local) address")
    judge(target.host, addresses, allowance)
    return target, addresses


def check_url(url: str, *, allow_http: bool = False, allow_private: bool = False,
              networks: tuple[Network, ...] = (), resolver: Resolver | None = None) -> None:
    """Raise UnsafeDestination (or Unresolvable) saying why `url` may not be called."""
    resolve_checked(url, Allowance(allow_http, allow_private, networks), resolver)


def check_config(url: str, allowance: Allowance) -> None:
    """`check_literal` at load time: a ConfigurationError so the forwarder refuses to start."""
    try:
        check_literal(url, allowance)
    except UnsafeDestination as exc:
        raise ConfigurationError(f"endpoint: {exc.message}") from None


def _kind(ip: Address) -> str:
    for name in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return "not global"
