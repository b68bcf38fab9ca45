"""The stack (`eventrouter up`'s processes) with one Amplitude integration pointed at a stand-in: what
the broker-loss, outage and security tests run their load through."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from eventrouter.dev.standins import AmplitudeStandIn
from eventrouter.stack import Stack
from eventrouter.supervise import run_up
from schemas import Topics
from schemas.runtime.revisions import ConfigStore
from tests.integration.forwarder_helpers import wait_for

CONFIG = """
pipelines: [{{name: web, write_keys: [wk1], integrations: [amp]}}]
integrations:
  - {{name: amp, kind: amplitude, playbook: "starter:amplitude", delivery: {{linger_ms: 50}},
     connection: {{api_key: "${{AMP_KEY}}", endpoint: "{url}/2/httpapi", allow_http: true, allow_private: true}}}}
"""


def amplitude_stack(bootstrap: str, topics: Topics, folder: Path, stand_in: AmplitudeStandIn, *,
                    gateway: bool = False, env: Mapping[str, str] | None = None, engine: str = "kafka") -> Stack:
    """The config applied as a revision, then a worker, an `amp` forwarder (and the gateway) started."""
    config = folder / "eventrouter.yaml"
    config.write_text(CONFIG.format(url=stand_in.url))
    ConfigStore(bootstrap, topics).apply(config)
    return Stack(bootstrap, topics, config, folder / "logs", gateway_port=0 if gateway else None,
                 env={"AMP_KEY": "amp-key", **(env or {})}, partitions=3,
                 engine=engine).start()


def wait_until_assigned(stack: Stack, roles: tuple[str, ...] = ("worker-1", "forward-amp")) -> None:
    """Each of `roles` has joined its consumer group and been given partitions."""
    for role in roles:
        wait_for(lambda r=role: "assigned" in (stack.folder / f"{r}.log").read_text(), timeout=60, what=role)


def up_driven(stack: Stack, drive: Callable[[], None], capsys: pytest.CaptureFixture[str]
              ) -> tuple[int, pytest.CaptureResult[str]]:
    """`run_up(stack)` while `drive()` runs in a thread, until it returns: up's exit code and what it printed.
    An error of `drive` is raised again here, with the end of up's output."""
    done, failed = threading.Event(), list[BaseException]()

    def run() -> None:
        try:
            drive()
        except BaseException as exc:  # noqa: BLE001 - raised again below, in the test's own thread
            failed.append(exc)
        finally:
            done.set()

    driver = threading.Thread(target=run, daemon=True)
    driver.start()
    code = run_up(stack, every_s=1.0, until=done.is_set)
    driver.join(10)
    captured = capsys.readouterr()
    if failed:
        raise AssertionError(captured.out[-3000:] + captured.err[-3000:]) from failed[0]
    return code, captured
