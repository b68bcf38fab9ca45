"""`--log-level` on every long-running command, applied in one place and inherited by the processes they start."""

from __future__ import annotations

import logging
import os

import pytest

from eventrouter.cli import LOG_LEVEL_ENV, build_parser, configure_logging

LONG_RUNNING = [["gateway"], ["worker"], ["forward", "amp"], ["up", "eventrouter.yaml"], ["demo"]]


@pytest.mark.parametrize("command", LONG_RUNNING)
def test_long_running_commands_log_at_info_unless_told_otherwise(command: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LOG_LEVEL_ENV, raising=False)
    assert build_parser().parse_args(command).log_level == "INFO"
    assert build_parser().parse_args([*command, "--log-level", "debug"]).log_level == "DEBUG"


def test_the_level_is_set_once_and_passed_on_to_child_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOG_LEVEL_ENV, "")  # restored after the test, whatever configure_logging sets
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig configures only a root without handlers
    monkeypatch.setattr(root, "level", root.level)
    configure_logging(build_parser().parse_args(["up", "eventrouter.yaml", "--log-level", "WARNING"]))
    assert root.level == logging.WARNING
    assert os.environ[LOG_LEVEL_ENV] == "WARNING"
    assert build_parser().parse_args(["worker"]).log_level == "WARNING"  # what `up` starts inherits it


def test_short_commands_keep_warning_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    configure_logging(build_parser().parse_args(["config", "validate", "x.yaml"]))
    assert root.level == logging.WARNING


def test_gateway_answers_503_before_segments_client_timeouts_by_default() -> None:
    assert build_parser().parse_args(["gateway"]).ack_timeout == 5.0
