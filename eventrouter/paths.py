"""Where eventrouter keeps local state: $EVENTROUTER_HOME, default ./.eventrouter (git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("EVENTROUTER_HOME", ".eventrouter")).resolve()


def cache_dir() -> Path:
    """Broker jars and Maven's local repository; shared by every state dir."""
    return Path(os.environ.get("EVENTROUTER_CACHE", str(home() / "cache"))).resolve()


def kafka_state_dir() -> Path:
    return home() / "kafka"
