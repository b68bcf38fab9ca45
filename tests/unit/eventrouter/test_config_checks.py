"""`config validate` refuses what a forwarder would refuse at start, with the path, without resolving
secrets or asking DNS (eventrouter/ops.py `load_checked`, `connection_problems`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventrouter.cli import main
from eventrouter.ops import connection_problems, load_checked, unset_references
from schemas.config import load_config, parse_config
from schemas.errors import ConfigurationError

EXAMPLE = Path(__file__).parents[3] / "examples" / "eventrouter.yaml"
PIPELINE = "pipelines: [{name: web, write_keys: [wk], integrations: [a]}]\n"


def _integration(kind: str, connection: str) -> str:
    return (PIPELINE + f"integrations:\n  - {{name: a, kind: {kind}, playbook: 'starter:{kind}', "
                       f"connection: {connection}}}\n")


def _problems(kind: str, connection: str) -> list[str]:
    return connection_problems(parse_config(_integration(kind, connection)))


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
     "connection.alow_http: unknown key; webhook connections take: endpoint, url"),
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
    ("meta_capi", '{pixel_id: "1", access_token: "${T}", allow_http: true}',
     "integrations[0].connection.allow_http: unknown key; meta_capi connections take: endpoint, pixel_id"),
    ("amplitude", '{api_key: "${K}", allow_http: true}', "integrations[0].connection.allow_http: unknown key"),
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
                    "     connection: {pixel_id: '1', access_token: '${T}', allow_http: true}}\n")
    load_config(path)  # the model alone takes it
    with pytest.raises(ConfigurationError) as caught:
        load_checked(path)
    message = str(caught.value)
    assert "2 problems" in message
    assert "integrations[0].connection.url: scheme http" in message
    assert "integrations[2].connection.allow_http: unknown key" in message


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
