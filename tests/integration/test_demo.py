"""The main job (`make run`, `eventrouter demo`) runs end to end as a user runs it, and accounts for every
event at each stage: sent and received, routed per integration, delivered per vendor.

As a user runs it: the installed console script, from a folder outside the repository, with the repository
root not on `sys.path` (pytest puts it there; a user's shell does not). Three installs: the editable one
`make` makes, with the compiled build and as plain Python, and a regular install of the wheel (`pip
install .`, what the Docker image does), which has no build; and the editable one with the Faust engine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.catalogue import KINDS
from schemas.native import build_current
from tests.conftest import _cache_dir

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _wheel_install(target: Path) -> Path:
    """`pip install .` into a folder of its own (our packages only; the dependencies are this venv's): the
    console script it made."""
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(REPO)], check=True, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert "deprecat" not in (done.stdout + done.stderr).lower(), done.stderr  # e.g. a licence table, not SPDX
    return target / "bin" / "eventrouter"


@pytest.mark.parametrize("install", ["editable", "editable, plain Python", "wheel", "editable, faust engine"])
def test_the_main_job_accounts_for_every_event(install: str, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "EVENTROUTER_PURE")}
    env |= {"EVENTROUTER_HOME": str(tmp_path / "home"),
            "EVENTROUTER_CACHE": str(_cache_dir()),  # the jars the test session's broker uses
            "TMPDIR": str(tmp_path)}  # the logs folder the demo keeps for its user, not left in /tmp
    script = BIN / "eventrouter"
    if install == "editable, plain Python":
        env["EVENTROUTER_PURE"] = "1"
    elif install == "wheel":
        installed = tmp_path / "site"
        script = _wheel_install(installed)
        env["PYTHONPATH"] = str(installed)  # where a wheel's packages are: site-packages
    probe = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"], cwd=outside,
                           env=env, capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in json.loads(probe)  # the cwd (outside), never the repository
    engine = ["--engine", "faust"] if install.endswith("faust engine") else []
    done = subprocess.run([str(script), "demo", *engine], cwd=outside, env=env, capture_output=True, text=True,
                          timeout=600)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    compiled = install in ("editable", "editable, faust engine") and \
        (build_current() or bool(os.environ.get("CI")))  # `make test` built it
    assert f"hot path: {'compiled (mypyc)' if compiled else 'plain Python'}" in out
    assert re.search(rf"^worker-1: pid \d+ \({'faust' if engine else 'kafka'} engine\)", out, re.M), out[:2000]
    assert "summary: sent=600 received=600 invalid_reported=2 lost=0" in out
    assert "gateway writeKey: wk_demo" in out  # the key a newcomer needs, the one the demo sent with
    assert re.search(r"^console: http://127\.0\.0\.1:\d+/ ", out, re.M) and "console login: demo / " in out
    assert "routing: every event accounted for per integration: yes" in out
    assert "delivery: every routed event delivered or dead-lettered: yes" in out
    lines = [line for line in out.splitlines() if re.match(r"^  \w+ +routed ", line)]
    assert len(lines) == len(KINDS) and all("dead-lettered 0 (-)" in line for line in lines), lines  # each takes all
    assert "broker stopped" in out
