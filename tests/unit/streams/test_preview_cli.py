"""`eventrouter preview` and `eventrouter config validate` from the command line, no Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventrouter.cli import main

CONFIG = """
pipelines: [{name: web, write_keys: [wk_1], integrations: [ga4]}]
integrations: [{name: ga4, kind: ga4, connection: {measurement_id: G-1, api_secret: "${GA4_SECRET}"},
                playbook: "starter:ga4"}]
"""


def test_preview_prints_the_vendor_payload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text(CONFIG)
    (tmp_path / "e.json").write_text(json.dumps([
        {"type": "track", "event": "Signed Up", "userId": "u", "messageId": "m", "timestamp": "2026-11-26T10:00:00Z"},
        {"type": "identify", "userId": "u", "messageId": "m2"}]))
    config, events = str(tmp_path / "c.yaml"), str(tmp_path / "e.json")
    assert main(["preview", "--config", config, "--integration", "ga4", events]) == 0
    out = capsys.readouterr().out
    first, second = (json.loads(part) for part in out.replace("}\n{", "}\n\x00{").split("\x00"))
    assert first["payload"]["name"] == "sign_up"
    assert first["payload"]["timestamp_micros"] == 1795687200000000
    assert second == {"filtered": "filter.allow", "integration": "ga4"}


def test_config_validate_reports_and_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(CONFIG)
    bad.write_text("pipelines: [{name: web, write_keys: [wk], colour: red}]\nintegrations: [{name: x}]\n")
    assert main(["config", "validate", str(good)]) == 0
    out = capsys.readouterr().out
    assert "valid: 1 pipelines, 1 integrations" in out and "'api_secret': '***'" in out
    assert main(["config", "validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "pipelines[0].colour: unknown key" in err
    assert "integrations[0].kind: Field required" in err
    assert "integrations[0].playbook: Field required" in err
