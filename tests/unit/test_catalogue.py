"""The destination catalogue (schemas/catalogue.py) is the one list of vendors: the config schema, the
vendor modules, the starter kits, the stand-ins, the golden files and the conformance cases all agree
with it, so adding a vendor is the change docs/adding-a-vendor.md describes and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from eventrouter.dev.standins import STAND_INS
from forwarders.vendors import VENDORS
from schemas.catalogue import CATALOGUE, CATEGORIES, KINDS, destination
from schemas.config import parse_config
from schemas.errors import ConfigurationError
from schemas.playbook.model import starter_names
from schemas.playbook.route import Route
from tests.integration.vendor_cases import SECRETS, case
from tests.unit.forwarders.test_vendors import CONNECTIONS

REPO = Path(__file__).resolve().parents[2]


def test_every_part_knows_exactly_the_catalogues_kinds() -> None:
    assert len(set(KINDS)) == len(KINDS)
    assert list(VENDORS) == list(KINDS)
    assert list(STAND_INS) == list(KINDS)
    assert sorted(starter_names()) == sorted(KINDS)
    assert sorted(p.stem for p in (REPO / "forwarders" / "vendors").glob("*.py")
                  if p.stem not in {"__init__", "base"}) == sorted(KINDS)
    assert sorted(p.stem for p in (REPO / "eventrouter" / "dev" / "standins").glob("*.py")
                  if p.stem not in {"__init__", "server"}) == sorted(KINDS)
    assert list(CONNECTIONS) == list(SECRETS) == list(KINDS)  # the unit and conformance tests' fixtures
    for folder in (REPO / "tests" / "golden", REPO / "tests" / "golden" / "requests"):
        assert {p.stem for p in folder.glob("*.json")} - {"events"} == set(KINDS), folder


def test_the_config_takes_each_kind_with_its_starter_kit_and_refuses_any_other() -> None:
    listed = "".join(f"  - {{name: {k}, kind: {k}, playbook: 'starter:{k}'}}\n" for k in KINDS)
    config = parse_config("integrations:\n" + listed)
    assert [i.kind for i in config.integrations] == list(KINDS)
    with pytest.raises(ConfigurationError,
                       match=r"integrations\[0\]\.kind: .*unknown kind 'rudderstack'; one of: meta_capi"):
        parse_config("integrations: [{name: s, kind: rudderstack, playbook: {}}]")


@pytest.mark.parametrize("kind", KINDS)
def test_an_events_integrations_map_switches_a_destination_off_by_each_of_its_names(kind: str) -> None:
    route = Route(parse_config(f"integrations: [{{name: mine, kind: {kind}, playbook: {{keep_event: true}}}}]")
                  .integration("mine"))
    event = {"type": "track", "event": "e", "userId": "u", "messageId": "m"}
    assert route.decide(event).payload is not None
    for name in destination(kind).names:
        assert route.decide({**event, "integrations": {name.title(): False}}).payload is None, name


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_has_a_conformance_case_against_its_stand_in(kind: str) -> None:
    made = case(kind)
    try:
        assert isinstance(made.stand_in, STAND_INS[kind])
        assert made.kind == kind
    finally:
        made.stand_in.stop()


def test_each_destination_names_its_title_and_its_vendors_reference() -> None:
    for entry in CATALOGUE:
        assert entry.title and all(a == a.lower() for a in entry.names)
        assert entry.docs.startswith("https://") or entry.kind == "webhook"
        assert entry.category in CATEGORIES, entry.kind
