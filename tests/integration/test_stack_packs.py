"""`eventrouter up --forwarder-processes N`: the integrations' forwarders packed into N processes
(forwarders/host.py), each integration still on its own consumer group; a new revision starts again only
the pack it touches, and every event is delivered once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eventrouter.dev.standins import AmplitudeStandIn, MixpanelStandIn
from eventrouter.stack import Stack
from schemas.runtime.revisions import ConfigStore
from tests.integration.forwarder_helpers import wait_for
from tests.integration.kafka_helpers import fresh_topics
from tests.integration.stack_helpers import up_driven
from tests.integration.test_stack import SECRETS, _posts, three_revisions, track, vendors

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
__all__ = ["vendors"]  # the fixture, used here


def test_up_packs_the_forwarders_into_one_process_and_a_revision_starts_it_again_with_its_new_members(
        bootstrap: str, tmp_path: Path, vendors: tuple[AmplitudeStandIn, MixpanelStandIn],
        capsys: pytest.CaptureFixture[str]) -> None:
    amp, mp = vendors
    topics = fresh_topics(bootstrap, partitions=3)
    revisions = three_revisions(tmp_path, amp, mp)
    store = ConfigStore(bootstrap, topics)
    store.apply(revisions[0])
    stack = Stack(bootstrap, topics, revisions[0], tmp_path / "logs", env=SECRETS, partitions=3, forwarder_processes=1)
    seen: dict[str, Any] = {}

    def packs() -> list[list[str]]:
        return [c.args[1:c.args.index("--partitions")] for c in stack.children
                if c.role.startswith("forwarders-") and not c.stopped]

    def drive() -> None:
        url = f"http://127.0.0.1:{stack.gateway_port}/v1/batch"
        wait_for(lambda: _posts(url, []), timeout=90, what="the gateway")
        seen["before"] = packs()
        store.apply(revisions[1])
        wait_for(lambda: packs() == [["amp", "mp"]], timeout=30, what="the pack started again with mp in it")
        wait_for(lambda: "config revision 2 in force" in (stack.folder / "worker-1.log").read_text(),
                 timeout=60, what="the worker on revision 2")
        assert _posts(url, [track(i, "pack") for i in range(20)])
        wait_for(lambda: len(mp.keys) >= 20 and len(amp.keys) >= 20, timeout=120, what="20 events at both")
        store.apply(revisions[2])
        wait_for(lambda: packs() == [["amp"]], timeout=60, what="the pack started again without mp")
        assert _posts(url, [track(i, "after") for i in range(10)])
        wait_for(lambda: len(amp.keys) >= 30, timeout=120, what="10 more at amp")
        seen["processes"] = [c.role for c in stack.children if not c.stopped]

    code, captured = up_driven(stack, drive, capsys)
    assert seen["before"] == [["amp"]], seen
    assert sorted(seen["processes"]) == ["forwarders-1", "gateway", "worker-1"], seen
    assert "mp (forwarders-1) started: revision 2 delivers to it" in captured.out, captured.out[-3000:]
    assert "mp (forwarders-1) stopped: revision 3 no longer delivers to it" in captured.out, captured.out[-3000:]
    assert code == 0
    expected: set[str] = {f"pack-{i}" for i in range(20)} | {f"after-{i}" for i in range(10)}
    assert set(amp.keys) == expected and amp.duplicates == 0
    assert set(mp.keys) == {f"pack-{i}" for i in range(20)} and mp.duplicates == 0
