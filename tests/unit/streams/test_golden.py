"""Golden fixtures: what each starter kit makes of the same Segment events, through `preview`.

To accept a deliberate change: EVENTROUTER_UPDATE_GOLDEN=1 pytest tests/unit/streams/test_golden.py,
then review the diff of tests/golden/.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from schemas.config import parse_config
from schemas.playbook.model import starter_names
from streams.preview import preview

GOLDEN = Path(__file__).parents[2] / "golden"
EVENTS: dict[str, dict[str, Any]] = json.loads((GOLDEN / "events.json").read_text())


@pytest.mark.parametrize("kit", starter_names())
def test_starter_kit_output_matches_its_golden_file(kit: str) -> None:
    config = parse_config(f"integrations: [{{name: {kit}, kind: {kit}, playbook: 'starter:{kit}'}}]")
    got = {name: preview(config, kit, event) for name, event in EVENTS.items()}
    path = GOLDEN / f"{kit}.json"
    if os.environ.get("EVENTROUTER_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text())
