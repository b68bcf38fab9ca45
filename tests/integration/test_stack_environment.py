"""Each process `eventrouter up` starts gets the least environment: read from /proc/<pid>/environ of the
children of a real Stack, a forwarder holds its own integration's secrets and no other's, and the workers
and the internet-facing gateway hold none."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from eventrouter.stack import Stack
from tests.integration.forwarder_helpers import wait_for
from tests.integration.kafka_helpers import fresh_topics

pytestmark = [pytest.mark.kafka, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")]

ENV = {"AMP_KEY": "amp-key-value", "HOOK_TOKEN": "hook-token-value", "HOOK_SECRET": "hook-signing-value",
       "UNRELATED_SECRET": "not-for-anyone", "EVENTROUTER_LOG_LEVEL": "INFO"}
CONFIG = """
pipelines:
  - {name: web, write_keys: [wk1], integrations: [amp, hook]}
integrations:
  - {name: amp, kind: amplitude, playbook: "starter:amplitude",
     connection: {api_key: "${AMP_KEY}", endpoint: "http://127.0.0.1:9/2/httpapi"}}
  - {name: hook, kind: webhook, playbook: {},
     connection: {url: "http://127.0.0.1:9/hook", allow_http: true, allow_private: true, secret: "${HOOK_SECRET}",
                  headers: {Authorization: "Bearer ${HOOK_TOKEN}"}}}
"""


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if entry)


def test_each_child_gets_only_the_secrets_its_own_work_resolves(bootstrap: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARENT_ONLY_TOKEN", "from-the-shell")  # what the shell that runs `up` holds
    config = tmp_path / "eventrouter.yaml"
    config.write_text(CONFIG)
    stack = Stack(bootstrap, fresh_topics(bootstrap), config, tmp_path / "logs", gateway_port=0, env=ENV).start()
    try:
        environs: dict[str, dict[str, str]] = {}

        def read_all() -> bool:  # once each child runs `eventrouter` (not between fork and exec)
            for child in stack.children:
                if b"eventrouter" in Path(f"/proc/{child.process.pid}/cmdline").read_bytes():
                    env = _environ(child.process.pid)
                    if "PATH" in env:
                        environs.setdefault(child.role, env)
            return set(environs) == {"worker-1", "forward-amp", "forward-hook", "gateway"}

        wait_for(read_all, timeout=30, what="every child's environment")
    finally:
        stack.stop()
    secrets = {"AMP_KEY", "HOOK_TOKEN", "HOOK_SECRET", "UNRELATED_SECRET", "PARENT_ONLY_TOKEN"}
    held = {role: secrets & set(env) for role, env in environs.items()}
    assert held == {"worker-1": set(), "gateway": set(), "forward-amp": {"AMP_KEY"},
                    "forward-hook": {"HOOK_TOKEN", "HOOK_SECRET"}}, held
    assert environs["forward-amp"]["AMP_KEY"] == "amp-key-value"
    for env in environs.values():  # the process basics are there
        assert "PATH" in env and env.get("EVENTROUTER_LOG_LEVEL") == "INFO"
    values = set(ENV.values()) - {"INFO"}
    assert not values & set(environs["gateway"].values())
