"""The demo's vendors: a stand-in for every vendor of the catalogue, or those asked for (`--vendors`), and a
config that routes one pipeline to each, its secrets as `${ENV}` references the demo sets."""

from __future__ import annotations

import pytest

from eventrouter.cli import build_parser
from eventrouter.demo_delivery import DemoVendors, secret_variable
from schemas.catalogue import KINDS
from schemas.config import parse_config


@pytest.mark.parametrize("kinds", [KINDS, ("tiktok", "klaviyo")])
def test_the_demo_config_routes_one_pipeline_to_each_vendor_asked_for(kinds: tuple[str, ...]) -> None:
    vendors = DemoVendors(kinds).start()
    try:
        config = parse_config(vendors.config())
        assert [i.kind for i in config.integrations] == list(kinds)
        assert config.pipelines[0].integrations == list(kinds)
        assert set(vendors.secrets) == {secret_variable(k) for k in kinds}
        assert all(value not in vendors.config() for value in vendors.secrets.values())  # references only
    finally:
        vendors.stop()


def test_demo_vendors_takes_kinds_of_the_catalogue_each_once() -> None:
    parser = build_parser()
    assert parser.parse_args(["demo", "--vendors", "tiktok, segment"]).vendors == ("tiktok", "segment")
    assert parser.parse_args(["demo"]).vendors == KINDS
    for wrong in ("nope", "tiktok,tiktok", ","):
        with pytest.raises(SystemExit):
            parser.parse_args(["demo", "--vendors", wrong])
