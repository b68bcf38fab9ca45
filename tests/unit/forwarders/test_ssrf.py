"""The webhook's destination guard: https only, no credentials in the URL, no private, loopback or
link-local targets unless explicitly allowed; a host that does not resolve now is left to the send."""

from __future__ import annotations

import pytest

from forwarders.ssrf import UnsafeDestination, check_url


def resolver(*addresses: str):  # type: ignore[no-untyped-def]
    return lambda host, port: list(addresses)


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
    assert caught.value.reason == "webhook.unsafe_destination"


def test_public_https_passes_and_allowances_are_explicit() -> None:
    check_url("https://hooks.example.com/x", resolver=resolver("93.184.215.14"))
    check_url("http://127.0.0.1:8080/x", allow_http=True, allow_private=True, resolver=resolver("127.0.0.1"))
    with pytest.raises(UnsafeDestination):
        check_url("http://127.0.0.1:8080/x", allow_http=True, resolver=resolver("127.0.0.1"))


def test_a_host_that_does_not_resolve_now_is_left_to_the_send() -> None:
    def failing(host: str, port: int) -> list[str]:
        raise OSError("Temporary failure in name resolution")
    check_url("https://hooks.example.com/x", resolver=failing)
