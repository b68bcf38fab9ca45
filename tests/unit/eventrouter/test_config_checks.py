"""`config validate` refuses what a forwarder would refuse at start, with the path, without resolving
secrets or asking DNS (eventrouter/checks.py `load_checked`, `connection_problems`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventrouter.checks import connection_problems, load_checked, unset_references
from eventrouter.cli import main
from schemas.catalogue import KINDS
from schemas.config import load_config, parse_config
from schemas.errors import ConfigurationError
from tests.unit.forwarders.test_vendors import referenced

EXAMPLE = Path(__file__).parents[3] / "examples" / "eventrouter.yaml"
PIPELINE = "pipelines: [{name: web, write_keys: [wk], integrations: [a]}]\n"


def _integration(kind: str, connection: str) -> str:
    return (PIPELINE + f"integrations:\n  - {{name: a, kind: {kind}, playbook: 'starter:{kind}', "
                       f"connection: {connection}}}\n")


def _problems(kind: str, connection: str) -> list[str]:
    try:
        config = parse_config(_integration(kind, connection))
    except ConfigurationError as exc:  # refused by the model already (a literal secret: schemas/secrets.py)
        return str(exc).splitlines()[1:]
    return connection_problems(config)


@pytest.mark.parametrize(("connection", "expected"), [
    ('{url: "http://127.0.0.1:9/hook"}', "integrations[0].connection.url: scheme http is not allowed"),
    ('{url: "https://127.0.0.1:9/hook"}', "non-public address (loopback)"),
    ('{url: "https://[::1]/hook"}', "non-public address (loopback)"),
    ('{url: "https://127.1/hook"}', "non-public address (loopback)"),
    ('{url: "https://2130706433/hook"}', "non-public address (loopback)"),
    ('{url: "https://localhost./hook"}', "non-public address (loopback)"),
    ('{url: "https://169.254.169.254/latest"}', "non-public address (link-local)"),
    ('{url: "https://10.1.2.3/hook"}', "non-public address (private)"),
    ('{url: "https://u:p@example.com/hook"}', "credentials in the URL"),
    ('{url: "https://example.com/a", endpoint: "http://example.com/b"}', "connection.endpoint: scheme http"),
    ('{url: "https://example.com/a", max_events: 0}', "connection.max_events: Input should be greater"),
    ('{url: "https://example.com/a", alow_http: true}',
     "connection.alow_http: unknown key; webhook connections take: endpoint, allow_http, allow_private, url"),
    ('{secret: "${S}"}', "connection.url: Field required"),
])
def test_a_webhook_the_forwarder_would_refuse_is_refused_with_its_path(connection: str, expected: str) -> None:
    problems = _problems("webhook", connection)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("connection", [
    '{url: "https://example.com/hook"}',
    '{url: "http://127.0.0.1:9/hook", allow_http: true, allow_private: true}',
    '{url: "https://hooks.internal.example/x"}',  # a name: not looked up at validation (the forwarder does)
    '{url: "https://${HOOK_HOST}/x", max_events: "${HOOK_MAX}"}',  # known only where it runs
])
def test_a_webhook_the_forwarder_takes_passes(connection: str) -> None:
    assert _problems("webhook", connection) == []


@pytest.mark.parametrize(("kind", "connection", "expected"), [
    ("meta_capi", '{pixel_id: "1", access_token: "${T}", alow_http: true}',
     "integrations[0].connection.alow_http: unknown key; meta_capi connections take: endpoint, allow_http, "
     "allow_private, pixel_id"),
    ("amplitude", '{api_key: "${K}", alow_http: true}', "integrations[0].connection.alow_http: unknown key"),
    ("ga4", '{measurement_id: G-1}', "integrations[0].connection.api_secret: Field required"),
])
def test_other_vendors_settings_are_checked_too(kind: str, connection: str, expected: str) -> None:
    problems = _problems(kind, connection)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_at_once_beside_the_models_own(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pipelines: [{name: web, write_keys: [wk], integrations: [a, b, c]}]\nintegrations:\n"
                    "  - {name: a, kind: webhook, playbook: 'starter:webhook', connection: {url: 'http://127.0.0.1/'}}\n"
                    "  - {name: b, kind: amplitude, playbook: 'starter:amplitude', connection: {api_key: '${K}'}}\n"
                    "  - {name: c, kind: meta_capi, playbook: 'starter:meta_capi',\n"
                    "     connection: {pixel_id: '1', access_token: '${T}', alow_http: true}}\n")
    load_config(path)  # the model alone takes it
    with pytest.raises(ConfigurationError) as caught:
        load_checked(path)
    message = str(caught.value)
    assert "2 problems" in message
    assert "integrations[0].connection.url: scheme http" in message
    assert "integrations[2].connection.alow_http: unknown key" in message


def test_the_shipped_example_passes_the_forwarder_checks() -> None:
    load_checked(EXAMPLE)


def test_unset_references_are_named_not_refused() -> None:
    connection = {"api_key": "${A}", "nested": {"x": ["${B}-${C}"]}, "plain": "v"}
    assert unset_references(connection, {"B": "set", "C": ""}) == ["A", "C"]


def test_config_validate_and_apply_refuse_a_webhook_the_forwarder_would_refuse(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text(_integration("webhook", '{url: "http://127.0.0.1:9/hook"}'))
    assert main(["config", "validate", str(bad)]) == 1
    assert "integrations[0].connection.url: scheme http is not allowed" in capsys.readouterr().err
    # refused before any broker is asked (none listens on port 9)
    assert main(["config", "apply", str(bad), "--bootstrap-servers", "127.0.0.1:9"]) == 1
    assert "integrations[0].connection.url" in capsys.readouterr().err
    good.write_text(_integration("amplitude", '{api_key: "${AMP_UNSET_HERE}"}'))
    monkeypatch.delenv("AMP_UNSET_HERE", raising=False)
    assert main(["config", "validate", str(good)]) == 0
    assert "not set here: AMP_UNSET_HERE" in capsys.readouterr().out


# Every vendor's URL passes the destination guard at validation, in every spelling of an internal address.
INTERNAL_URLS = ["https://169.254.169.254/latest/meta-data/", "http://2130706433/", "https://2130706433/",
                 "https://[::ffff:169.254.169.254]/", "https://[64:ff9b::a9fe:a9fe]/", "https://0x7f.1/",
                 "https://[fe80::1%25lo]/x", "https://[2002:a9fe:a9fe::]/", "https://localhost/"]


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "webhook"])  # a webhook's is its url
@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_every_vendors_endpoint_is_guarded_at_validation(kind: str, url: str) -> None:
    from forwarders.vendors import VENDORS

    problems = _problems(kind, json.dumps({**referenced(kind), "endpoint": url}))
    assert [p for p in problems if p.startswith("integrations[0].connection.endpoint: ")], problems
    assert "allow_private" in VENDORS[kind].settings_type.model_fields  # the opt-in is offered to every vendor


def test_a_private_endpoint_needs_the_opt_in_and_the_operators_networks() -> None:
    opted_in = _integration("amplitude", '{api_key: "${K}", endpoint: "http://127.0.0.1:9/2/httpapi", '
                                         'allow_http: true, allow_private: true}')
    assert connection_problems(parse_config(opted_in), {"EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8"}) == []
    problems = connection_problems(parse_config(opted_in), {})
    assert problems and "does not list" in problems[0], problems
    problems = connection_problems(parse_config(opted_in), {"EVENTROUTER_PRIVATE_NETWORKS": "nonsense"})
    assert any("EVENTROUTER_PRIVATE_NETWORKS: 'nonsense'" in p for p in problems), problems
    alone = _integration("amplitude", '{api_key: "${K}", endpoint: "http://127.0.0.1:9/2/httpapi", allow_http: true}')
    problems = connection_problems(parse_config(alone), {"EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8"})
    assert problems and "set allow_private" in problems[0], problems


def test_config_validate_and_apply_refuse_internal_endpoints_with_their_path(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pipelines: [{name: web, write_keys: [wk], integrations: [a, b, c]}]\nintegrations:\n"
                    "  - {name: a, kind: amplitude, playbook: 'starter:amplitude', connection: {api_key: '${K}'}}\n"
                    "  - {name: b, kind: ga4, playbook: 'starter:ga4',\n"
                    "     connection: {measurement_id: G-1, api_secret: '${S}',\n"
                    "                  endpoint: 'https://169.254.169.254/latest/meta-data/'}}\n"
                    "  - {name: c, kind: amplitude, playbook: 'starter:amplitude',\n"
                    "     connection: {api_key: '${K}', endpoint: 'http://2130706433/', allow_http: true}}\n")
    for command in (["config", "validate", str(path)],
                    ["config", "apply", str(path), "--bootstrap-servers", "127.0.0.1:9"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "integrations[1].connection.endpoint: host 169.254.169.254 resolves to a non-public address " \
               "(link-local)" in err, err
        assert "integrations[2].connection.endpoint: host 2130706433 resolves to a non-public address " \
               "(loopback)" in err, err
        assert "integrations[0]" not in err


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("https://169.254.169.254/${P}/x", "non-public address (link-local)"),
    ("http://127.0.0.1/${P}", "scheme http is not allowed"),
    ("https://127.0.0.1/v?key=${P}", "non-public address (loopback)"),
])
def test_a_reference_in_an_endpoints_path_or_query_does_not_hide_its_host(endpoint: str, expected: str) -> None:
    problems = _problems("amplitude", f"{{api_key: '${{K}}', endpoint: '{endpoint}'}}")
    assert any(expected in p and "integrations[0].connection.endpoint" in p for p in problems), problems


def test_a_reference_in_an_endpoints_host_is_judged_where_it_runs() -> None:
    assert _problems("amplitude", "{api_key: '${K}', endpoint: 'https://${AMPLITUDE_HOST}/2/httpapi'}") == []


def test_config_apply_refuses_a_literal_header_secret_before_publishing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(PIPELINE + "integrations:\n  - {name: a, kind: webhook, playbook: 'starter:webhook',\n"
                    "     connection: {url: 'https://h.example/x', headers: {X-Api-Key: 'ak-live-123456'}}}\n")
    assert main(["config", "apply", str(path), "--bootstrap-servers", "127.0.0.1:9"]) == 1
    err = capsys.readouterr().err
    assert "integrations[0].connection.headers.X-Api-Key" in err, err
    assert "ak-live-123456" not in err
