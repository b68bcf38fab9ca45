"""The console's changes to a config document: each a new, valid document; the one in force untouched."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from eventrouter.console import changes
from schemas.config import config_from_document, resolved_document
from schemas.errors import ConfigurationError

EXAMPLE = Path(__file__).parents[4] / "examples" / "eventrouter.yaml"


@pytest.fixture
def document() -> dict[str, Any]:
    return resolved_document(EXAMPLE.read_text(), EXAMPLE.parent, str(EXAMPLE))


def test_a_write_key_is_made_rotated_and_revoked_without_touching_the_revision_in_force(
        document: dict[str, Any]) -> None:
    before = copy.deepcopy(document)
    added, key = changes.add_write_key(document, "web-prod")
    assert key.startswith("wk_") and len(key) > 30 and document == before
    assert config_from_document(added, "x").pipeline_for(key) is not None
    revoked, old = changes.revoke_write_key(added, "web-prod", 0)
    assert old == "wk_live_123" and revoked["pipelines"][0]["write_keys"] == [key]
    with pytest.raises(ConfigurationError, match="last key"):
        changes.revoke_write_key(revoked, "web-prod", 0)
    with pytest.raises(ConfigurationError, match="no such key"):
        changes.revoke_write_key(added, "web-prod", 5)


def test_a_pipeline_and_an_integration_from_its_starter_kit_are_added_valid(document: dict[str, Any]) -> None:
    made, key = changes.add_pipeline(document, "mobile")
    with_posthog = changes.add_integration(made, "ph", "posthog", ["mobile"])
    config = config_from_document(with_posthog, "x")
    assert config.integration("ph").connection == {"api_key": "${POSTHOG_API_KEY}"}
    assert config.pipeline_for(key) is not None and config.pipeline_for(key).integrations == ["ph"]  # type: ignore[union-attr]
    for bad, match in ((lambda: changes.add_integration(document, "amplitude", "amplitude", []), "exists"),
                       (lambda: changes.add_integration(document, "x", "nope", []), "kind"),
                       (lambda: changes.add_pipeline(document, "web-prod"), "exists")):
        with pytest.raises(ConfigurationError, match=match):
            bad()


def test_an_integration_is_disabled_removed_everywhere_and_its_connection_replaced(document: dict[str, Any]) -> None:
    off = changes.set_enabled(document, "integration", "amplitude", False)
    assert not config_from_document(off, "x").integration("amplitude").enabled
    gone = config_from_document(changes.remove_integration(document, "amplitude"), "x")
    assert "amplitude" not in {i.name for i in gone.integrations}
    assert all("amplitude" not in p.integrations for p in gone.pipelines)
    moved = changes.set_connection(document, "amplitude", "api_key: ${OTHER_KEY}\nendpoint: https://api.eu.amplitude.com/2/httpapi\n")
    assert config_from_document(moved, "x").integration("amplitude").connection["api_key"] == "${OTHER_KEY}"
    with pytest.raises(ConfigurationError):  # a literal secret is the config's own refusal
        config_from_document(changes.set_connection(document, "crm-hook", "url: https://h.example/x\n"
                                                    "headers: {Authorization: Bearer abc123456789}\n"), "x")
    with pytest.raises(ConfigurationError, match="mapping"):
        changes.set_connection(document, "amplitude", "- a list")


def test_a_connection_shows_its_references_as_written_and_masks_anything_that_may_be_a_secret() -> None:
    from eventrouter.console.screens import shown

    assert shown({"api_key": "${AMP_KEY}", "endpoint": "https://api2.amplitude.com/2/httpapi"}) == {
        "api_key": "${AMP_KEY}", "endpoint": "https://api2.amplitude.com/2/httpapi"}
    out = shown({"api_key": "literal-123", "url": "https://u:pw-123@h.example/x?token=tk-123&region=eu",
                 "headers": {"Authorization": "Bearer ${TOKEN}", "X-Api-Key": "ak-123", "Content-Type": "a/b"}})
    text = repr(out)
    assert "literal-123" not in text and "pw-123" not in text and "tk-123" not in text and "ak-123" not in text
    assert "Bearer ${TOKEN}" in text and "a/b" in text and "region=eu" in text
