from __future__ import annotations

import copy
from pathlib import Path

import pytest

from schemas import full_problems, history, load_schema, reader_problems

NAMES = sorted(p.stem for p in (Path(__file__).resolve().parents[3] / "schemas" / "avro").glob("*.avsc"))


def test_schema_files_are_found() -> None:
    assert NAMES == ["deadletter", "event", "outbound"]


@pytest.mark.parametrize("name", NAMES)
def test_current_schema_is_fully_compatible_with_every_released_version(name: str) -> None:
    current = load_schema(name)
    for old in [current, *history(name)]:
        assert full_problems(current, old) == []


def test_adding_an_optional_field_is_compatible() -> None:
    v1 = load_schema("event")
    v2 = copy.deepcopy(v1)
    v2["fields"].append({"name": "sessionId", "type": ["null", "string"], "default": None})
    assert full_problems(v2, v1) == []


def test_a_new_field_without_default_is_caught() -> None:
    v1 = load_schema("event")
    bad = copy.deepcopy(v1)
    bad["fields"].append({"name": "tenant", "type": "string"})
    problems = full_problems(bad, v1)
    assert any("tenant" in p and p.startswith("backward") for p in problems)


def test_a_type_change_is_caught() -> None:
    v1 = load_schema("event")
    bad = copy.deepcopy(v1)
    next(f for f in bad["fields"] if f["name"] == "userId")["type"] = ["null", "long"]
    assert any("userId" in p for p in full_problems(bad, v1))


def test_removing_an_enum_symbol_is_caught() -> None:
    v1 = load_schema("event")
    bad = copy.deepcopy(v1)
    enum = next(f for f in bad["fields"] if f["name"] == "type")["type"]
    enum["symbols"] = [s for s in enum["symbols"] if s != "alias"]
    assert any("alias" in p for p in reader_problems(bad, v1))


def test_promotions_are_allowed() -> None:
    old = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    new = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}
    assert reader_problems(new, old) == []
    assert reader_problems(old, new) != []
