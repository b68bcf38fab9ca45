"""The main job (`eventrouter demo`, the README's first command) runs end to end and accounts for
every event at each stage: sent and received, routed per integration, delivered per vendor."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import _cache_dir

REPO = Path(__file__).resolve().parents[2]


def test_the_main_job_accounts_for_every_event(tmp_path: Path) -> None:
    env = {**os.environ, "EVENTROUTER_HOME": str(tmp_path / "home"),
           "EVENTROUTER_CACHE": str(_cache_dir()),  # the jars the test session's broker uses
           "TMPDIR": str(tmp_path)}  # the logs folder the demo keeps for its user, not left in /tmp
    done = subprocess.run([sys.executable, "-m", "eventrouter", "demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert "summary: sent=600 received=600 invalid_reported=2 lost=0" in out
    assert "routing: every event accounted for per integration: yes" in out
    assert "delivery: every routed event delivered or dead-lettered: yes" in out
    assert "broker stopped" in out
