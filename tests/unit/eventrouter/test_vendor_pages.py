"""The destination pages (docs/vendors/) and `eventrouter vendors` say, for every vendor of the catalogue,
what its module declares: connection keys, limits, dedup key (so whether a replay is safe), time window and
the ids it matches on, with where an event carries them."""

from __future__ import annotations

import subprocess
import sys

from eventrouter import vendor_pages
from forwarders.facts import catalogue, facts
from schemas.catalogue import KINDS


def test_the_pages_in_docs_are_current() -> None:
    wanted = vendor_pages.pages()
    assert {p.name for p in wanted} == {"README.md", *(f"{k}.md" for k in KINDS)}
    assert {p.name for p in vendor_pages.FOLDER.glob("*.md")} == {p.name for p in wanted}
    for path, text in wanted.items():
        assert path.read_text() == text, f"{path.name} is stale: run `python -m eventrouter.vendor_pages`"


def test_each_page_says_every_fact_its_module_declares() -> None:
    for f in catalogue():
        text = vendor_pages.page(f)
        assert all(f"| `{key.name}` |" in text for key in f.keys), f.kind
        assert ("A replay is safe." in text) == (f.dedup_key is not None), f.kind
        assert ("vendor.too_old" in text) == (f.max_age_s is not None), f.kind
        assert all(f"| `{name}` | `{where}` |" in text for name, where in f.match_ids), f.kind
        assert f.summary and f.summary in text, f.kind


def test_meta_declares_its_hashing_and_click_ids() -> None:
    meta = facts("meta_capi")
    assert "em" in meta.hashed and dict(meta.match_ids) == {"fbc": "context.fbc", "fbp": "context.fbp"}
    assert meta.replay_safe and meta.window == "up to 7 days old" and not meta.oauth


def test_eventrouter_vendors_lists_the_catalogue_and_says_all_of_one() -> None:
    listed = subprocess.run([sys.executable, "-m", "eventrouter", "vendors"], capture_output=True, text=True,
                            check=True).stdout
    assert [line.split()[0] for line in listed.splitlines()[1:len(KINDS) + 1]] == list(KINDS)
    one = subprocess.run([sys.executable, "-m", "eventrouter", "vendors", "meta_capi"], capture_output=True,
                         text=True, check=True).stdout
    assert one == vendor_pages.page(facts("meta_capi"))
    wrong = subprocess.run([sys.executable, "-m", "eventrouter", "vendors", "nope"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "invalid choice: 'nope'" in wrong.stderr and "Traceback" not in wrong.stderr
