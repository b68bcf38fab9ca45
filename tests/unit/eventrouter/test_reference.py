"""docs/configuration.md's generated part is what the models say, and every environment variable the
packages read is documented there."""

from __future__ import annotations

import re
from pathlib import Path

from eventrouter import reference
from schemas.config import Config, Integration
from schemas.delivery import Delivery
from schemas.playbook.model import Mapping_

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("eventrouter", "producers", "streams", "forwarders", "schemas")


def test_configuration_md_is_current() -> None:
    text = reference.DOC.read_text()
    assert reference.BEGIN in text and reference.END in text, "docs/configuration.md lost its markers"
    assert reference.updated(text) == text, \
        "docs/configuration.md is stale: run `python -m eventrouter.reference` and commit the result"


def test_the_rendering_is_the_same_each_time() -> None:
    assert reference.render() == reference.render()


def test_every_key_of_every_model_is_in_the_reference() -> None:
    rendered = reference.render()
    for model in (Config, Integration, Delivery, Mapping_):
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in rendered, name


def test_every_field_has_a_description() -> None:
    rendered = reference.render()
    assert "|  |\n" not in rendered  # an empty description cell


def test_a_stale_part_is_replaced_and_the_text_around_it_kept() -> None:
    document = f"intro\n\n{reference.BEGIN}\nold\n{reference.END}\n\nafter\n"
    new = reference.updated(document)
    assert new.startswith("intro\n\n" + reference.BEGIN) and new.endswith(reference.END + "\n\nafter\n")
    assert "\nold\n" not in new and "### integrations[].delivery" in new


def test_every_environment_variable_the_packages_read_is_documented() -> None:
    read = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if path.name == "reference.py":  # the list itself, the tests' switches included
                continue
            read |= set(re.findall(r"EVENTROUTER_[A-Z_]+[A-Z]", path.read_text()))
    documented = {v.name for v in reference.ENVIRONMENT}
    assert read - documented == set(), "add these to eventrouter/reference.py ENVIRONMENT"
