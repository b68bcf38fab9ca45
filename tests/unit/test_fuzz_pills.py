"""Property-based fuzzing of the whole pure path a record takes, with hostile values: admission
(Router.admit), every starter kit's playbook (Router.route) and every vendor's `build`.

Hostile: times at year 1 and 9999 with any offset, 1e308, -0.0, the largest integers, strings and ids at
and past their limits, nesting at the depth limit, and the wrong JSON type in every well-known field.
Asserted: nothing raises; a refused record names a reason of its family (never the catch-all
`error.admit`), a playbook failure a `playbook.*` reason (never the catch-all `playbook.error`), and a
vendor refuses an item only through `Built.refused` or its FinalError. The catch-alls are the worker's
safety net; landing in one here is a bug the fuzz found.

Deterministic for CI: derandomized, a bounded number of examples, no example database.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import event as outcome_of
from hypothesis import strategies as st

from forwarders.records import item_from
from forwarders.vendors import VENDORS, Item, vendor_for
from schemas import EventCodec, Topics, outbound_codec
from schemas.config import parse_config
from schemas.errors import EncodeError, FinalError
from schemas.validation import DEFAULT_LIMITS, ValidationError
from streams.router import Admitted, Rejected, Router, Source
from tests.unit.forwarders.test_vendors import CONNECTIONS  # one connection per kind, no network

PILLS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BROAD = settings(PILLS, max_examples=1000)  # ~3 s here
KINDS = sorted(VENDORS)
ROUTER = Router(parse_config(
    "pipelines: [{name: web, write_keys: [wk], integrations: [" + ", ".join(KINDS) + "]}]\nintegrations:\n"
    + "".join(f'  - {{name: {kind}, kind: {kind}, playbook: "starter:{kind}"}}\n' for kind in KINDS)), 1, Topics("f"))
with mock.patch("forwarders.ssrf.resolve", lambda host, port: ["93.184.215.14"]):  # no DNS in unit tests
    VENDOR_OF = {kind: vendor_for(kind, CONNECTIONS[kind]) for kind in KINDS}
CODEC = EventCodec()
OUTBOUND = outbound_codec()
ADMISSION_FAMILIES = ("decode.", "auth.", "invalid.", "limit.")
CAP = DEFAULT_LIMITS.id_chars

# -- hostile values ------------------------------------------------------------------------------------
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: "Z" if m == 0 else f"{'+' if m > 0 else '-'}{abs(m) // 60:02d}:{abs(m) % 60:02d}")
TIMES = st.builds(
    lambda year, month, day, clock, fraction, offset: f"{year:04d}-{month:02d}-{day:02d}T{clock}{fraction}{offset}",
    st.sampled_from([1, 2, 1969, 1970, 2026, 9998, 9999]), st.sampled_from([1, 2, 12]), st.sampled_from([1, 28, 31]),
    st.sampled_from(["00:00:00", "13:59:59", "23:59:59", "10:00"]), st.sampled_from(["", ".999", ".123456"]), OFFSETS)
NUMBERS = st.one_of(
    st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, -0.0, 0.0, 2**63 - 1, -(2**63), 2**64 - 1,
                     253402300800000, -62135596800001, 1e11, -1e11, 10**19]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1), st.floats(allow_nan=False, allow_infinity=False))
TEXTS = st.one_of(
    st.text(max_size=20), TIMES,
    st.sampled_from(["", " ", "abc", "1e308", "-0", "NaN", "Infinity", "0x10", "\uff11\uff12\uff13", "\u202e\u200d",
                     "a@B.c ", "+1 (555) 010-0000", "x" * 16_384, "é" * 4000, "\U0001f600" * 3000]))


def rarely(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int = 6) -> st.SearchStrategy[Any]:
    """`rare` about once in `one_in` draws: a record that fails admission tells nothing of the playbooks."""
    return st.builds(lambda n, a, b: b if n == 3 else a, st.integers(min_value=0, max_value=one_in - 1), usual, rare)


SOME_ID = st.text(min_size=1, max_size=10)
IDS = rarely(SOME_ID, st.sampled_from(["i" * CAP, "\x00" * CAP, "i" * (CAP + 1), "x" * 16_384]), 10)


def _nested(depth: int, leaf: Any) -> Any:
    for index in range(depth):
        leaf = [leaf] if index % 2 else {"n": leaf}
    return leaf


SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS)
DEEP = st.builds(_nested, st.sampled_from([30, 31, 32, 33]), SCALARS)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)
ANY = st.one_of(SCALARS, JSON, DEEP)  # what a well-known field may hold instead of its type

# the fields the starter kits read, each may hold anything
PROPERTY_KEYS = ["revenue", "price", "quantity", "currency", "products", "order_id", "value", "total", "tax",
                 "shipping", "coupon", "product_id", "sku", "name", "category", "brand", "email", "phone", "url",
                 "title", "referrer", "query", "time", "distinct_id", "ip", "list_id", "method"]
TRAIT_KEYS = ["email", "phone", "firstName", "lastName", "gender", "birthday", "address"]
CONTEXT_KEYS = ["traits", "ip", "userAgent", "locale", "page", "library", "app", "device", "os", "location", "fbc",
                "fbp", "consent"]
PRODUCTS = st.lists(st.one_of(st.dictionaries(st.sampled_from(["product_id", "sku", "price", "quantity", "name"]),
                                              ANY, max_size=5), ANY), max_size=4)


def _object(keys: list[str], extra: st.SearchStrategy[Any] = ANY) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(keys), extra, max_size=6)


# mostly objects whose fields hold anything (what reaches the playbooks); sometimes not an object at all
PROPERTIES = rarely(st.one_of(_object(PROPERTY_KEYS), st.builds(lambda p, products: {**p, "products": products},
                                                                _object(PROPERTY_KEYS), PRODUCTS)), ANY)
TRAITS = rarely(_object(TRAIT_KEYS, st.one_of(ANY, _object(["city", "country", "state", "postalCode"]))), ANY)
CONTEXT = rarely(_object(CONTEXT_KEYS, st.one_of(ANY, TRAITS, _object(["url", "title", "referrer", "path", "name",
                                                                      "version", "model"]))), ANY)
WELL_KNOWN = ["userId", "anonymousId", "groupId", "previousId", "event", "name", "category", "timestamp",
              "originalTimestamp", "sentAt", "receivedAt", "channel", "integrations", "version"]


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    call = draw(st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]))
    event: dict[str, Any] = {"type": call, "messageId": draw(IDS), "writeKey": "wk", "userId": draw(IDS)}
    if call == "track":
        event["event"] = draw(st.sampled_from(["Order Completed", "Product Viewed", "Signed Up", "Purchase",
                                               "Products Searched", "Checkout Started"]))
    if call == "group":
        event["groupId"] = draw(IDS)
    if call == "alias":
        event["previousId"] = draw(IDS)
    for field in draw(st.lists(st.sampled_from(WELL_KNOWN), max_size=2, unique=True)):
        event[field] = draw(rarely(st.one_of(TIMES, SOME_ID), ANY, 4))  # a hostile right type, or the wrong one
    if draw(st.booleans()):
        event["properties"] = draw(PROPERTIES)
    if draw(st.booleans()):
        event["traits"] = draw(TRAITS)
    if draw(st.booleans()):
        event["context"] = draw(CONTEXT)
    return event


# -- the path ------------------------------------------------------------------------------------------
def _through_everything(event: dict[str, Any]) -> None:
    try:
        value = CODEC.encode(event)
    except (EncodeError, ValidationError, ValueError, TypeError, OverflowError):
        outcome_of("not encodable")
        return  # not a record anything of ours writes (NaN, a lone surrogate...): never on the raw topic
    outcome = ROUTER.admit(Source(value, "f.raw", 0, 7, 1_795_000_000_000, [("h", b"v")]))
    if isinstance(outcome, Rejected):
        assert outcome.reason.startswith(ADMISSION_FAMILIES), (outcome.reason, outcome.message)
        assert outcome.message and outcome.dead_letter.value
        outcome_of(f"refused {outcome.reason}")
        return
    assert isinstance(outcome, Admitted)
    routed = ROUTER.route(outcome)
    outcome_of(f"routed to {len(routed.outputs)}, failed {len(routed.failed)}")
    for name, reason, dead in routed.failed:
        assert reason.startswith("playbook.") and reason != "playbook.error", (name, reason, dead)
    for output in routed.outputs:
        assert output.integration is not None and output.value is not None
        item = item_from(OUTBOUND, output.value, topic=output.topic, partition=0, offset=7, written_ms=0)
        _build(output.integration, item)


def _build(kind: str, item: Item) -> None:
    vendor = VENDOR_OF[kind]
    try:
        built = vendor.build([item, item._replace(message_id="other")])
    except FinalError:
        return
    for position, reason in built.refused.items():
        assert position in (0, 1) and reason
    for request in built.requests:
        assert request.body and request.url


@BROAD
@given(event=hostile_events())
def test_hostile_events_are_routed_or_refused_with_a_reason_through_every_kit_and_vendor(
        event: dict[str, Any]) -> None:
    _through_everything(event)


@PILLS
@given(field=st.sampled_from(["timestamp", "originalTimestamp", "sentAt", "receivedAt"]), when=TIMES,
       other=st.one_of(st.none(), TIMES), birthday=st.one_of(TIMES, NUMBERS),
       call=st.sampled_from(["track", "identify"]))
def test_any_time_at_either_end_of_the_calendar_with_any_offset_is_routed_or_refused(
        field: str, when: str, other: str | None, birthday: Any, call: str) -> None:
    event: dict[str, Any] = {"type": call, "event": "Order Completed", "userId": "u", "messageId": "m",
                             "writeKey": "wk", field: when, "traits": {"birthday": birthday},
                             "properties": {"time": birthday, "revenue": 1}}
    if other is not None:
        event["sentAt" if field != "sentAt" else "originalTimestamp"] = other
    _through_everything(event)


@PILLS
@given(products=PRODUCTS, revenue=ANY, email=ANY, context=CONTEXT)
def test_an_order_with_hostile_values_in_every_field_the_kits_read(products: Any, revenue: Any, email: Any,
                                                                  context: Any) -> None:
    _through_everything({"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m",
                         "writeKey": "wk", "properties": {"products": products, "revenue": revenue, "value": revenue,
                                                          "price": revenue, "currency": revenue, "email": email},
                         "context": context})


def test_the_fuzz_is_deterministic_and_bounded() -> None:
    for profile in (PILLS, BROAD):
        assert profile.derandomize and profile.database is None and profile.max_examples <= 1000
