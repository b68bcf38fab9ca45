"""The destination guard every vendor's requests pass (forwarders/ssrf.py): https only, no credentials
in the URL, no private, loopback or link-local targets in any spelling (an IPv4 address embedded in an
IPv6 one is judged as that IPv4 address), fail closed when a host does not resolve, and a private
target only where the connection and the operator both allow it."""

from __future__ import annotations

import ipaddress

import pytest

from forwarders.ssrf import (
    Allowance,
    Unresolvable,
    UnsafeDestination,
    check_literal,
    check_url,
    embedded,
    operator_networks,
)
from schemas.errors import ConfigurationError, RetryableError

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


def no_dns(host: str, port: int) -> list[str]:
    raise OSError("Temporary failure in name resolution")


@pytest.mark.parametrize(("url", "addresses", "words"), [
    ("http://hooks.example.com/x", ["93.184.215.14"], "https only"),
    ("ftp://hooks.example.com/x", ["93.184.215.14"], "scheme ftp"),
    ("https://user:pw@hooks.example.com/x", ["93.184.215.14"], "credentials"),
    ("https://127.0.0.1/x", ["127.0.0.1"], "loopback"),
    ("https://internal.example.com/x", ["10.0.0.8"], "private"),
    ("https://metadata.example.com/x", ["169.254.169.254"], "link-local"),
    ("https://[::1]:8443/x", ["::1"], "loopback"),
    ("https://rebind.example.com/x", ["93.184.215.14", "192.168.1.1"], "private"),
    ("https://hooks.example.com:99999/x", ["93.184.215.14"], "port"),
])
def test_unsafe_destinations_are_refused(url: str, addresses: list[str], words: str) -> None:
    with pytest.raises(UnsafeDestination, match=words) as caught:
        check_url(url, resolver=resolver(*addresses))
    assert caught.value.reason == "forwarder.unsafe_destination"


# Hosts written as an address, in every spelling a resolver or a connection would take; the real resolver
# (getaddrinfo does not go to DNS for an address). Each of these names a loopback, private or link-local
# host: through the IPv4 address it embeds where it embeds one.
INTERNAL = [
    "https://[fe80::1%25lo]/x",                # a zone id: urlsplit keeps "%25lo", getaddrinfo fails
    "https://[fe80::1%lo]/x",
    "https://2130706433/x",                    # 127.0.0.1 in decimal
    "https://2852039166/latest/meta-data/",    # 169.254.169.254 in decimal
    "https://0177.0.0.1/x",                    # octal
    "https://0x7f.0.0.1/x",                    # hex
    "https://0x7f000001/x",
    "https://127.1/x",
    "https://[::ffff:127.0.0.1]/x",            # IPv4-mapped (RFC 4291)
    "https://[::ffff:a9fe:a9fe]/x",
    "https://[::127.0.0.1]/x",                 # IPv4-compatible (RFC 4291, deprecated)
    "https://[::ffff:0:7f00:1]/x",             # IPv4-translated (RFC 2765)
    "https://[64:ff9b::7f00:1]/x",             # NAT64 well-known prefix (RFC 6052)
    "https://[64:ff9b::a9fe:a9fe]/x",
    "https://[64:ff9b::10.0.0.1]/x",
    "https://[64:ff9b:1:7f00:0:100::]/x",      # NAT64 local-use /48 (RFC 8215), the /48 layout
    "https://[64:ff9b:1::7f00:1]/x",           # ... the /96 layout
    "https://[2002:7f00:1::]/x",               # 6to4 (RFC 3056)
    "https://[2002:a9fe:a9fe::1]/x",
    "https://[2001:0:5db8:d70e::80ff:fffe]/x",  # Teredo (RFC 4380): client 127.0.0.1, obfuscated
    "https://[::]/x",
    "https://0.0.0.0/x",
    "https://[ff02::1]/x",                     # multicast
    "https://224.0.0.1/x",
    "https://100.64.0.1/x",                    # shared address space (RFC 6598)
    "https://localhost./x",
    "https://api.localhost/x",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_every_spelling_of_an_internal_address_is_refused_before_and_at_send(url: str) -> None:
    with pytest.raises(UnsafeDestination):
        check_url(url)  # at send time, resolving for real
    with pytest.raises(UnsafeDestination):
        check_literal(url, Allowance())  # at validation, no DNS


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::", "::ffff:127.0.0.1",
                                     "2001:0:5db8:d70e::80ff:fffe"])
def test_a_name_that_resolves_to_an_embedded_internal_address_is_refused(address: str) -> None:
    with pytest.raises(UnsafeDestination, match="embeds"):
        check_url("https://vendor.example.com/x", resolver=resolver(address))


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d70e", "2002:5db8:d70e::1", "::ffff:93.184.215.14",
                                     "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "93.184.215.14"])
def test_a_public_address_in_any_form_passes(address: str) -> None:
    check_url("https://vendor.example.com/x", resolver=resolver(address))


def test_embedded_addresses_follow_the_rfc_layouts() -> None:
    def four(text: str) -> list[str]:
        return [str(a) for a in embedded(ipaddress.ip_address(text))]
    assert four("64:ff9b::c000:221") == ["192.0.2.33"]                       # RFC 6052 2.4, /96
    assert "192.0.2.33" in four("64:ff9b:1:c000:2:2100::")                   # RFC 6052 2.4, the /48 layout
    assert four("2002:c000:221::1") == ["192.0.2.33"]                        # RFC 3056
    assert four("2001:0:4136:e378:8000:63bf:3fff:fdd2") == ["65.54.227.120", "192.0.2.45"]  # RFC 4380 5
    assert four("::1") == ["::1"] and four("2001:db8::1") == ["2001:db8::1"]


def test_a_host_that_does_not_resolve_is_refused_as_a_retryable_error() -> None:
    with pytest.raises(Unresolvable, match="does not resolve") as caught:
        check_url("https://hooks.example.com/x", resolver=no_dns)
    assert isinstance(caught.value, RetryableError)
    with pytest.raises(Unresolvable):
        check_url("https://hooks.example.com/x", resolver=resolver())


def test_a_name_is_not_looked_up_at_validation() -> None:
    check_literal("https://hooks.example.com/x", Allowance())


def test_a_private_target_needs_the_connection_and_the_operator() -> None:
    url = "http://127.0.0.1:8080/x"
    check_url(url, allow_http=True, allow_private=True, networks=LOOPBACK)
    check_url("http://[::ffff:127.0.0.1]:8080/x", allow_http=True, allow_private=True, networks=LOOPBACK)
    with pytest.raises(UnsafeDestination, match="set allow_private"):
        check_url(url, allow_http=True, networks=LOOPBACK)  # the operator alone
    with pytest.raises(UnsafeDestination, match="does not list"):
        check_url(url, allow_http=True, allow_private=True)  # the config alone
    with pytest.raises(UnsafeDestination, match="private"):
        check_url("https://internal.example.com/x", allow_private=True, networks=LOOPBACK,
                  resolver=resolver("10.0.0.8"))


def test_the_operators_networks_come_from_the_environment() -> None:
    assert operator_networks({}) == ()
    assert operator_networks({"EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8, ::1/128,10.1.0.0/16"}) == (
        *LOOPBACK, ipaddress.ip_network("10.1.0.0/16"))
    with pytest.raises(ConfigurationError, match="EVENTROUTER_PRIVATE_NETWORKS: 'loopback'"):
        operator_networks({"EVENTROUTER_PRIVATE_NETWORKS": "loopback"})


@pytest.mark.parametrize("url", ["https://hooks.example.com\\@127.0.0.1/x", "https://hooks.example.com /x",
                                 "https://@hooks.example.com/x", "https://hooks.example.com%2f@127.0.0.1/x",
                                 "https:///x", "https://[::1/x"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(UnsafeDestination):
        check_literal(url, Allowance())
