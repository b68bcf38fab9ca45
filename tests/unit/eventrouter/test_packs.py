"""Which integrations share a forwarder process (eventrouter/packs.py)."""

from __future__ import annotations

from eventrouter.packs import packs_for, repack


def test_integrations_are_dealt_in_name_order_into_at_most_n_packs() -> None:
    assert packs_for(["mp", "amp", "hook", "ga4", "meta"], 2) == [["amp", "hook", "mp"], ["ga4", "meta"]]
    assert packs_for(["b", "a"], 5) == [["a"], ["b"]]  # never an empty pack
    assert packs_for([], 3) == []
    assert packs_for(["a", "b", "c"], 0) == [["a", "b", "c"]]


def test_a_revision_starts_again_only_the_packs_it_touches() -> None:
    packs = [["amp", "hook"], ["ga4", "mp"]]
    assert repack(packs, set(), set(), set(), 2) == (packs, set())
    assert repack(packs, set(), {"mp"}, set(), 2) == (packs, {1})                       # settings changed
    assert repack(packs, set(), set(), {"hook"}, 2) == ([["amp"], ["ga4", "mp"]], {0})  # no longer delivered to
    assert repack(packs, {"braze"}, set(), {"hook"}, 2) == ([["amp", "braze"], ["ga4", "mp"]], {0})  # smallest
    assert repack([["amp"]], set(), set(), {"amp"}, 2) == ([[]], {0})                     # empty: its process stops
    assert repack([], {"amp"}, set(), set(), 2) == ([["amp"]], {0})
    # started with fewer integrations than processes: new ones open new packs, up to N
    assert repack([["amp"]], {"mp", "hook"}, set(), set(), 3) == ([["amp"], ["hook"], ["mp"]], {1, 2})
    assert repack([["amp"]], {"mp", "hook"}, set(), set(), 2) == ([["amp", "mp"], ["hook"]], {0, 1})
