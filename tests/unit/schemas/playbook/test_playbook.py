"""Which integration receives an event, and by which named rule it does not."""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

import pytest

from schemas.config import parse_config
from schemas.errors import ConfigurationError
from schemas.playbook.hooks import CODE_MODULES_ENV
from schemas.playbook.route import PlaybookError, Route

HOOKS = "tests.unit.schemas.playbook.test_playbook"
with mock.patch.dict("os.environ", {CODE_MODULES_ENV: HOOKS}):  # the operator allows this module's hooks
    CONFIG = parse_config("""
integrations:
  - name: crm-hook
    kind: webhook
    consent: analytics
    playbook:
      filter: {allow: {type: [track, identify]}, deny: {event: ["Debug *"], when: "properties.internal != true"}}
      global:
        mappings:
          - {from: userId, to: user.id}
          - {from: traits.email, to: user.email_sha256, transform: hash, normalize: email}
          - {expr: "properties.price * properties.quantity", to: total, default: 0}
        enrich: {source: eventrouter}
      events:
        "Order Completed":
          rename: order_completed
          mappings:
            - {from: properties.revenue, to: value, transform: to_float, default: 0}
            - {from: properties, to: props}
            - {from: properties.extra, to: props.more}
        identify: {mappings: [{from: traits.plan, to: plan, transform: uppercase}]}
      default: {drop: true}
  - {name: amp, kind: amplitude, consent: analytics, consent_required: true, playbook: "starter:amplitude"}
  - name: coded
    kind: webhook
    playbook: {function: "tests.unit.schemas.playbook.test_playbook:shape"}
""")


def shape(event: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any] | None:
    if event.get("event") == "Skip":
        return None
    if event.get("event") == "Boom":
        raise RuntimeError("no")
    return {"shaped": event["messageId"]}


def _track(name: str = "Order Completed", **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "userId": "u", "messageId": "m", "timestamp": "2026-11-26T10:00:00Z",
            "properties": {"revenue": "9.5", "price": 2, "quantity": 3}, **extra}


def route(name: str) -> Route:
    return Route(CONFIG.integration(name), modules={HOOKS})


def test_event_section_global_mappings_enrich_and_rename() -> None:
    outcome = route("crm-hook").decide(_track())
    assert outcome.event_name == "order_completed"
    assert outcome.payload == {"user": {"id": "u"}, "total": 6, "source": "eventrouter", "value": 9.5,
                               "props": {"revenue": "9.5", "price": 2, "quantity": 3}}


def test_the_event_is_never_changed_by_its_playbook() -> None:
    event = _track(properties={"revenue": 1, "extra": {"a": 1}})
    before = copy.deepcopy(event)
    outcome = route("crm-hook").decide(event)
    assert outcome.payload is not None and outcome.payload["props"]["more"] == {"a": 1}
    assert event == before


@pytest.mark.parametrize(("event", "rule"), [
    ({"type": "page", "userId": "u", "messageId": "m"}, "filter.allow"),
    (_track("Debug click"), "filter.deny"),
    (_track("Signed Up"), "default.drop"),
    (_track(integrations={"All": False}), "integrations_map"),
    (_track(integrations={"crm-hook": False}), "integrations_map"),
    (_track(integrations={"Webhooks": False}), "integrations_map"),
    (_track(context={"consent": {"categoryPreferences": {"Analytics": False}}}), "consent.analytics"),
    (_track(context={"consent": {"optOut": ["analytics"]}}), "consent.analytics"),
])
def test_filtered_events_name_their_rule(event: dict[str, Any], rule: str) -> None:
    assert route("crm-hook").decide(event).filtered_by == rule


@pytest.mark.parametrize(("event", "delivered"), [
    (_track("Debug click", properties={"internal": True}), False),  # deny needs every criterion: internal → kept
    (_track(integrations={"All": False, "crm-hook": True}), True),
    (_track(integrations={"All": True}), True),
    (_track(context={"consent": {"categoryPreferences": {"analytics": True}}}), True),
    (_track(), True),  # no preferences, consent not required
])
def test_what_is_let_through(event: dict[str, Any], delivered: bool) -> None:
    outcome = route("crm-hook").decide(event)
    assert (outcome.payload is not None) is delivered, outcome


def test_deny_with_a_condition_lets_the_rest_through() -> None:
    outcome = route("crm-hook").decide(_track("Debug click", properties={"internal": True}))
    assert outcome.filtered_by == "default.drop"  # not denied (internal), then no section: default drops it


def test_consent_required_refuses_events_without_preferences() -> None:
    assert route("amp").decide(_track()).filtered_by == "consent.analytics"
    ok = _track(context={"consent": {"categoryPreferences": {"analytics": True}}})
    assert route("amp").decide(ok).payload is not None


def test_identify_uses_its_type_as_section_name() -> None:
    outcome = route("crm-hook").decide({"type": "identify", "userId": "u", "messageId": "m",
                                        "traits": {"plan": "pro", "email": " A@B.com"}})
    assert outcome.payload is not None
    assert outcome.payload["plan"] == "PRO"
    assert len(outcome.payload["user"]["email_sha256"]) == 64


def test_expression_failure_is_a_playbook_error() -> None:
    with pytest.raises(PlaybookError) as caught:
        route("crm-hook").decide(_track(properties={"price": "x", "quantity": 2}))  # text * number
    assert caught.value.reason == "playbook.expression"


def test_code_runs_only_from_modules_the_operator_allows() -> None:
    assert route("coded").decide(_track()).payload == {"shaped": "m"}
    assert route("coded").decide(_track("Skip")).filtered_by == "function"
    with pytest.raises(PlaybookError, match="RuntimeError: no"):
        route("coded").decide(_track("Boom"))
    with pytest.raises(ConfigurationError, match=r"integration 'coded': playbook\.function: code hooks are off"):
        Route(CONFIG.integration("coded"), modules=set())
    with pytest.raises(ConfigurationError,
                       match=r"'tests\.unit\.schemas\.playbook\.test_playbook' is not in EVENTROUTER_CODE"):
        Route(CONFIG.integration("coded"), modules={"mycompany.hooks"})
    with mock.patch.dict("os.environ", {CODE_MODULES_ENV: ""}), pytest.raises(ConfigurationError):
        Route(CONFIG.integration("coded"))  # the environment decides by default: unset or empty, no code


def test_the_config_cannot_turn_code_on_for_itself() -> None:
    """`function: "this:s"` ran from `preview` when the config said allow_code: true; now the setting grants
    nothing, and any module outside EVENTROUTER_CODE_MODULES is refused at validation with its path."""
    text = """
settings: {allow_code: true}
integrations: [{name: x, kind: webhook, playbook: {function: "this:s"}}]
"""
    for allowed in ("", "mycompany.hooks", "tests.unit.schemas.playbook.test_playbook"):
        with mock.patch.dict("os.environ", {CODE_MODULES_ENV: allowed}), \
                pytest.raises(ConfigurationError, match=r"integrations\[0\]\.playbook\.function: (code hooks are off|"
                                                        r"module 'this' is not in EVENTROUTER_CODE_MODULES)"):
            parse_config(text)
    with mock.patch.dict("os.environ", {CODE_MODULES_ENV: "os"}), \
            pytest.raises(ConfigurationError, match="'_exit' is a private name"):
        parse_config(text.replace("this:s", "os:_exit"))


def test_generated_sections_write_what_the_mappings_one_by_one_write() -> None:
    """Sections read each event path once and remember the payload objects they write under; whatever
    the order of reads, writes, object merges and replacements, the payload is what running each
    mapping's closure in turn makes, and the event is left as it was."""
    import json
    import random

    from schemas.playbook.sections import compile_mapping, compile_section

    rng = random.Random(5)
    targets = ["a", "a.b", "a.c", "a.b.d", "x", "a.l[1]", "l[0]"]
    sources = ["p", "p.q", "p.r", "o", "o.k", "t", ["p.q", "t"]]
    values: list[Any] = [None, "v", 3, {"k": "w", "q": 1}, {"q": {"z": 1}}, [1, 2]]
    for _ in range(300):
        mappings: list[dict[str, Any]] = []
        for _ in range(rng.randrange(1, 8)):
            source = rng.choice(sources)
            mapping: dict[str, Any] = {"to": rng.choice(targets)}
            if isinstance(source, list):
                mapping.update({"from": source, "transform": "join"})
            elif rng.random() < 0.2:
                mapping["expr"] = f"coalesce({source}, t)"
            else:
                mapping["from"] = source
            if rng.random() < 0.2 and "transform" not in mapping:
                mapping["default"] = rng.choice([{"m": 1}, "d"])
            mappings.append(mapping)
        config = parse_config(json.dumps({"integrations": [
            {"name": "w", "kind": "webhook", "playbook": {"global": {"mappings": mappings}}}]}))
        section = config.integration("w").playbook.global_
        event = {"type": "track", "p": rng.choice(values), "o": rng.choice(values), "t": rng.choice(values)}
        before = copy.deepcopy(event)
        got: dict[str, Any] = {}
        compile_section(section, "global")(event, got, {id(got)})
        want: dict[str, Any] = {}
        owned = {id(want)}
        for mapping_ in section.mappings:
            compile_mapping(mapping_)(event, want, owned)
        assert got == want, mappings
        assert event == before


def test_a_sections_code_is_the_same_text_each_time_so_a_build_can_find_it() -> None:
    """The native build keys a compiled section by its text's hash: expression temporaries and constant
    names are numbered per section, and values are never part of the text."""
    import json

    from schemas.playbook.expressions import compile_expression
    from schemas.playbook.sections import section_key, section_module

    def section(currency: str) -> Any:
        config = parse_config(json.dumps({"integrations": [{"name": "w", "kind": "webhook", "playbook": {
            "global": {"mappings": [{"expr": "coalesce(properties.total, properties.revenue)", "to": "value"},
                                    {"from": "properties.currency", "to": "currency", "default": currency}]}}}]}))
        return config.integration("w").playbook.global_

    first = section_module(section("EUR"))
    compile_expression("coalesce(a, b, c)")  # numbers temporaries of its own meanwhile
    second = section_module(section("USD"))
    assert section_key(first[0]) == section_key(second[0])
    assert "EUR" not in first[0] and "EUR" in first[1].values() and "USD" in second[1].values()


def test_the_starter_kits_sections_type_check_as_mypyc_compiles_them(tmp_path: Any) -> None:
    """mypyc trusts the declared types (the event a dict): a wrong one would fail at run time, compiled."""
    from pathlib import Path

    from mypy import api

    from eventrouter.dev.native import section_modules

    files = []
    for path, source in section_modules().items():
        (tmp_path / Path(path).name).write_text(source)
        files.append(str(tmp_path / Path(path).name))
    assert len(files) >= 20
    out, err, status = api.run(["--strict", "--no-incremental", "--follow-imports=silent", *files])
    assert status == 0, out + err


def test_a_compiled_section_writes_what_the_execd_one_writes() -> None:
    """Where the native build has a starter kit's section, it makes the same payload as the same text exec'd,
    for each kind of call, with fields present, missing and of other types."""
    from schemas.playbook.sections import built, section_module, starter_sections

    events: list[dict[str, Any]] = [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "timestamp": "2026-11-27T10:00:00.000Z", "properties": {"revenue": "12.5", "currency": "eur",
                                                                "products": [{"product_id": "p1", "price": 3}]},
         "context": {"ip": "203.0.113.7", "userAgent": "UA", "traits": {"email": "A@b.com", "phone": "+1 555"},
                     "page": {"url": "https://x.test/a"}}},
        {"type": "identify", "anonymousId": "a1", "messageId": "m2", "timestamp": "2026-11-27T10:00:00Z",
         "traits": {"email": "x@y.z", "name": "N"}, "context": {"traits": "not an object"}},
        {"type": "page", "name": "Home", "userId": "u2", "messageId": "m3", "timestamp": "2026-11-27T10:00:00Z",
         "properties": {"title": "T"}, "context": None},
        {"type": "screen", "userId": "u3", "messageId": "m4", "timestamp": "2026-11-27T10:00:00Z"},
    ]
    compared = 0
    for section in starter_sections():
        source, consts = section_module(section)
        make = built(source)
        if make is None:
            continue
        namespace: dict[str, Any] = {}
        exec(compile(source, "<test>", "exec"), namespace)
        for event in events:
            outcomes = []
            for function in (make(consts), namespace["make"](consts)):
                payload: dict[str, Any] = {}
                try:
                    function(copy.deepcopy(event), payload, {id(payload)})
                    outcomes.append(payload)
                except Exception as exc:  # noqa: BLE001 - the same error either way
                    outcomes.append(type(exc).__name__)
            assert outcomes[0] == outcomes[1], (source[:300], event["type"])
            compared += 1
    if not compared:
        pytest.skip("no compiled build here (`make native`)")
