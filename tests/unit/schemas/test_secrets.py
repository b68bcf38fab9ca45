"""Secrets by value: every value resolved from a `${ENV}` reference is scrubbed, with its encodings, from
what leaves a process (dead letters, receipts, errors, log lines); literal secrets in headers and URLs are
refused at validation with their path and masked wherever a connection is shown."""

from __future__ import annotations

import base64
import io
import logging
import threading
from urllib.parse import quote

import pytest

from forwarders.delivery import BatchDelivery, Transport
from forwarders.records import receipts
from forwarders.vendors import vendor_for
from forwarders.vendors.base import Item
from schemas.config import parse_config
from schemas.deadletters import dead_letter
from schemas.delivery import Delivery
from schemas.errors import ConfigurationError
from schemas.secrets import (
    MIN_SCRUBBED_CHARS,
    SCRUBBER,
    Scrubber,
    ScrubbingFilter,
    masked,
    resolve_secrets,
    scrubbed_thread_excepthook,
    uncaught_text,
    unscrubbed_names,
)

SECRET = "Zq8-h3ader-s3cret-77"


def test_a_secret_and_its_encodings_are_scrubbed_by_value() -> None:
    scrubber = Scrubber([SECRET])
    for form in (SECRET, quote(SECRET, safe=""), base64.b64encode(SECRET.encode()).decode()):
        assert scrubber.scrub(f"echo: {form}.") == "echo: ***."
    for user in ("", "u", "sa.user", "someone@example.com"):  # basic auth: the secret at any offset of base64
        basic = base64.b64encode(f"{user}:{SECRET}".encode()).decode()
        assert SECRET not in scrubber.scrub(basic)
        assert basic not in scrubber.scrub(f"Authorization: Basic {basic}")


def test_values_shorter_than_the_minimum_are_not_scrubbed_and_named() -> None:
    short = "a" * (MIN_SCRUBBED_CHARS - 1)
    assert Scrubber([short]).scrub(f"a banana {short}") == f"a banana {short}"
    assert unscrubbed_names({"x": "${SHORT}", "y": "${LONG}"}, {"SHORT": short, "LONG": SECRET}) == ["SHORT"]


def test_resolving_a_reference_teaches_the_process_scrubber_its_value() -> None:
    value = "resolved-" + SECRET
    resolve_secrets({"headers": {"X-Api-Key": "${K}"}}, {"K": value})
    assert SCRUBBER.scrub(f"the vendor said {value}") == "the vendor said ***"


def test_every_dead_letter_and_receipt_is_scrubbed_whatever_the_caller_gave() -> None:
    value = "dl-" + SECRET
    SCRUBBER.add(value)
    letter = dead_letter(reason="vendor.rejected", message=f"bad key {value}", stage="deliver", original=b"",
                         source_topic="t", vendor_body=f'{{"headers": {{"X-Api-Key": "{value}"}}}}')
    assert value not in repr(letter)
    from forwarders.delivery import Fate
    parts = receipts("hook", [Item("m1", {})], {0: Fate("dead", 1, 0, 400, f"vendor.invalid: {value}")},
                     requests=1)
    assert value.encode() not in b"".join(parts)


def test_a_vendor_echoing_the_request_in_its_400_leaves_no_header_value_in_the_fate() -> None:
    value = "hdr-" + SECRET
    vendor = vendor_for("webhook", {"url": "https://hooks.example/x", "headers": {"X-Api-Key": value},
                                    "username": "u", "password": "pw-" + SECRET})
    from forwarders.delivery import Answer
    from forwarders.ratelimit import TokenBucket

    def echo(request: object) -> Answer:
        return Answer(400, {}, repr(request).encode())  # the whole request: headers, body

    transport: Transport = echo
    delivery = BatchDelivery(vendor, Delivery(), transport, TokenBucket(None), sleep=lambda _s: None)
    vendor.before_send = lambda request: None  # type: ignore[method-assign]  # no DNS in a unit test
    report = delivery.deliver([Item("m1", {"a": 1})])
    fate = report.fates[0]
    assert fate.state == "dead" and fate.status == 400
    basic = base64.b64encode(f"u:pw-{SECRET}".encode()).decode()
    assert fate.body and "X-Api-Key" in fate.body
    for leaked in (value, "pw-" + SECRET, basic):
        assert leaked not in (fate.body or "") + (fate.reason or "")


def test_the_log_filter_scrubs_messages_arguments_and_tracebacks() -> None:
    value = "log-" + SECRET
    scrubber = Scrubber([value])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubbingFilter(scrubber))
    logger = logging.getLogger("tests.secrets.filter")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key %s in a line", value)
        try:
            raise ValueError(f"refused {value}")
        except ValueError:
            logger.exception("a failure")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert value not in text and "key *** in a line" in text and "refused ***" in text


HOOK = """
pipelines: [{{name: web, write_keys: [wk], integrations: [hook]}}]
integrations:
  - {{name: hook, kind: webhook, playbook: {{}}, connection: {connection}}}
"""


@pytest.mark.parametrize(("connection", "path"), [
    ('{url: "https://h.example/x", headers: {Authorization: "Bearer abcdef123456"}}', "headers.Authorization"),
    ('{url: "https://h.example/x", headers: {X-Api-Key: "abcdef123456"}}', "headers.X-Api-Key"),
    ('{url: "https://h.example/x", headers: {X-Tenant: "acme"}}', "headers.X-Tenant"),
    ('{url: "https://h.example/x", headers: {X-Api-Key: "x${K}"}}', "headers.X-Api-Key"),
    ('{url: "https://h.example/x?token=abcdef123456"}', "connection.url: the query parameter 'token'"),
    ('{url: "https://h.example/x?a=1&api_key=abcdef123456"}', "the query parameter 'api_key'"),
    ('{url: "https://h.example/x?key=abcdef123456"}', "the query parameter 'key'"),
    ('{url: "https://h.example/x", endpoint: "https://user:abcdef123456@h.example/x"}',
     "connection.endpoint: credentials in the URL"),
])
def test_literal_secrets_in_headers_and_urls_are_refused_with_their_path(connection: str, path: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(HOOK.format(connection=connection))
    text = str(caught.value)
    assert f"integrations[0].connection.{path}" in text or path in text, text
    assert "abcdef123456" not in text and "acme" not in text


@pytest.mark.parametrize("connection", [
    '{url: "https://h.example/x", headers: {Authorization: "Bearer ${HOOK_TOKEN}", X-Api-Key: "${K}"}}',
    '{url: "https://h.example/x", headers: {Content-Type: "application/cloudevents+json", User-Agent: "acme/1"}}',
    '{url: "https://h.example/x?token=${T}&region=eu"}',
    '{url: "${HOOK_URL}"}',
])
def test_references_and_plain_headers_pass(connection: str) -> None:
    parse_config(HOOK.format(connection=connection))


def test_masked_never_shows_a_header_value_or_url_credential() -> None:
    shown = repr(masked({"url": "https://u:pw-123456@h.example/x?token=tk-123456&region=eu",
                         "headers": {"X-Api-Key": "ak-123456", "Content-Type": "application/json"}}))
    for secret in ("pw-123456", "tk-123456", "ak-123456"):
        assert secret not in shown
    assert "region=eu" in shown and "application/json" in shown


def test_an_exception_nothing_caught_is_printed_scrubbed_in_any_thread(capsys: pytest.CaptureFixture[str]) -> None:
    scrubber = Scrubber()
    scrubber.add("uncaught-secret-123456")
    try:
        raise RuntimeError("vendor said: token uncaught-secret-123456 is bad")
    except RuntimeError as exc:
        text = uncaught_text(type(exc), exc, exc.__traceback__, scrubber)
    assert "uncaught-secret-123456" not in text and "RuntimeError" in text and "***" in text
    SCRUBBER.add("thread-secret-123456")

    def fail() -> None:
        raise RuntimeError("thread-secret-123456")

    previous = threading.excepthook
    threading.excepthook = scrubbed_thread_excepthook
    try:
        thread = threading.Thread(target=fail, name="t1")
        thread.start()
        thread.join()
    finally:
        threading.excepthook = previous
    err = capsys.readouterr().err
    assert "Exception in thread t1" in err and "thread-secret-123456" not in err, err
