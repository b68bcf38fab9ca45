"""The config file: one parse, every problem at once with its path, secrets only as references."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.catalogue import KINDS
from schemas.config import load_config, parse_config
from schemas.errors import ConfigurationError
from schemas.playbook.model import starter_names
from schemas.secrets import masked, resolve_secrets

EXAMPLE = Path(__file__).parents[3] / "examples" / "eventrouter.yaml"

GOOD = """
pipelines:
  - {name: web-prod, write_keys: [wk_live_123], integrations: [amplitude, crm-hook]}
  - {name: old, write_keys: [wk_old], enabled: false}
integrations:
  - name: amplitude
    kind: amplitude
    connection: {api_key: "${AMPLITUDE_API_KEY}"}
    consent: analytics
    playbook: starter:amplitude
  - name: crm-hook
    kind: webhook
    connection: {url: "https://crm.example.com/hook", secret: "${CRM_HOOK_SECRET}"}
    playbook:
      filter: {allow: {type: [track, identify]}, deny: {event: ["Debug *"]}}
      global:
        mappings:
          - {from: userId, to: user.id}
          - {from: traits.email, to: user.email_sha256, transform: hash}
        enrich: {source: eventrouter}
      events:
        "Order Completed":
          rename: order_completed
          mappings:
            - {from: properties.revenue, to: value, transform: to_float, default: 0}
            - {from: properties.products, to: items, pluck: [product_id, price, quantity]}
      default: {drop: true}
"""


def test_the_sample_config_loads() -> None:
    config = parse_config(GOOD)
    assert [p.name for p in config.pipelines] == ["web-prod", "old"]
    assert config.integration("crm-hook").playbook.events["Order Completed"].rename == "order_completed"
    assert config.pipeline_for("wk_old").name == "old"  # type: ignore[union-attr]
    assert config.write_keys() == {"wk_live_123"}  # enabled pipelines only
    assert config.settings.dedup_window_s == 86_400


def test_the_shipped_example_is_valid() -> None:
    config = load_config(EXAMPLE)
    assert config.pipelines


def test_every_starter_kit_is_a_valid_playbook() -> None:
    for name in starter_names():
        parse_config(f"integrations: [{{name: x, kind: {name}, playbook: 'starter:{name}'}}]")
    assert set(starter_names()) == set(KINDS)


BAD = """
pipelines:
  - {name: web, write_keys: [wk1], integrations: [amp, nope], colour: blue}
  - {name: web2, write_keys: [wk1]}
integrations:
  - name: amp
    kind: amplitude
    connection: {api_key: "plain-text-key"}
    playbook:
      events:
        "Order Completed":
          mappings:
            - {from: properties.revenue, to: value, transform: hsah}
            - {from: properties.revenue, to: value, transform: to_float, default: "zero"}
            - {from: properties.x, to: y, separator: ","}
            - {expr: "__import__('os').system('x')", to: z}
  - {name: amp, kind: rudderstack, playbook: "starter:nothing"}
  - {name: ga, kind: ga4, playbook: {filter: {allow: {when: "properties.x >"}}}}
"""


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_config(BAD, source="bad.yaml")
    text = str(caught.value)
    expected = [
        r'pipelines\[0\]\.colour: unknown key',
        r'integrations\[0\]\.playbook\.events\["Order Completed"\]\.mappings\[0\]: unknown transform \'hsah\'',
        r'mappings\[1\]: default \'zero\' is not of the type transform to_float yields',
        r'mappings\[2\]: transform direct takes no separator',
        r"mappings\[3\]: expr: unknown function",
        r"integrations\[1\]\.playbook: no starter kit 'nothing'",
        r"integrations\[1\]\.kind: unknown kind .*; one of: meta_capi, google_ads",
        r"integrations\[2\]\.playbook\.filter\.allow\.when: syntax error",
    ]
    for pattern in expected:
        assert re.search(pattern, text), (pattern, text)
    assert text.startswith("bad.yaml: ")


def test_cross_references_and_secrets_are_checked() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_config("""
pipelines:
  - {name: web, write_keys: [wk1], integrations: [amp, nope]}
  - {name: web2, write_keys: [wk1]}
integrations:
  - {name: amp, kind: amplitude, connection: {api_key: "plain-text-key"}, playbook: "starter:amplitude"}
  - {name: amp, kind: webhook, playbook: {function: "mymod:shape"}}
""")
    text = str(caught.value)
    for words in ("pipelines[0].integrations[1]: no integration named 'nope'",
                  "pipelines[1].write_keys: a writeKey is also in pipeline 'web'",
                  "integrations[1].name: 'amp' is used twice",
                  "integrations[0].connection.api_key: a secret must be a ${ENV_VAR} reference",
                  "integrations[1].playbook.function: code hooks are off"):
        assert words in text, (words, text)
    assert "plain-text-key" not in text


def test_file_playbooks_are_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "crm.yaml").write_text("global: {enrich: {source: file}}\n")
    (tmp_path / "eventrouter.yaml").write_text(
        "integrations: [{name: crm, kind: webhook, playbook: 'file:books/crm.yaml'}]\n")
    config = load_config(tmp_path / "eventrouter.yaml")
    assert config.integration("crm").playbook.global_.enrich == {"source": "file"}


def test_secrets_are_masked_and_resolved_only_on_request() -> None:
    config = parse_config(GOOD)
    amplitude = config.integration("amplitude")
    assert "AMPLITUDE_API_KEY" not in repr(amplitude)
    assert "'***'" in repr(amplitude)
    assert masked({"url": "https://x", "token": "abc", "nested": {"k": "${K}"}}) == \
        {"url": "https://x", "token": "***", "nested": {"k": "***"}}
    assert resolve_secrets(amplitude.connection, {"AMPLITUDE_API_KEY": "k-1"}) == {"api_key": "k-1"}
    for environ in ({}, {"AMPLITUDE_API_KEY": ""}):
        with pytest.raises(ConfigurationError, match=r"not set \(or empty\): AMPLITUDE_API_KEY"):
            resolve_secrets(amplitude.connection, environ)
    assert "wk_live_123" not in repr(config.pipelines[0])


def test_not_yaml_and_unreadable_files_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not YAML"):
        parse_config("pipelines: [")
    with pytest.raises(ConfigurationError, match="top level must be a mapping"):
        parse_config("- 1")
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
