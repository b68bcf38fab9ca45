"""Compiled hot-path modules, used when they were built from exactly these sources.

`python -m eventrouter.native` (run by `make run` and `make test`) compiles the modules of the hot path
with mypyc into `.eventrouter/native/`, beside a manifest of their sources' SHA-256. A package that calls
`use_compiled(__name__, __path__)` first in its `__init__` then finds those modules there before its own
`.py` files, but only when every source listed still has the hash it was compiled from: an edited module
(or a checkout of another commit) runs as plain Python until the next build, never as stale code.
`EVENTROUTER_PURE=1` always runs plain Python. Installed from a wheel (no build folder): plain Python.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".eventrouter" / "native"
MANIFEST = FOLDER / "manifest.json"

_verdict: bool | None = None


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_current() -> bool:
    """True when the build exists, matches this interpreter and every compiled source is unchanged."""
    global _verdict
    if _verdict is None:
        _verdict = _check()
    return _verdict


def _check() -> bool:
    if os.environ.get("EVENTROUTER_PURE") == "1":
        return False
    try:
        manifest: dict[str, Any] = json.loads(MANIFEST.read_text())
        if manifest.get("python") != sys.version:
            return False
        return all(source_hash(ROOT / name) == digest for name, digest in manifest["sources"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def generated(key: str, name: str) -> Any:
    """`name` of the module `schemas._aot_<key>` the native build generated (the Avro readers and writers,
    eventrouter/native.py), when the build is current and has it; None otherwise."""
    if not compiled_current():
        return None
    try:
        module = importlib.import_module(f"schemas._aot_{key}")
    except ImportError:
        return None
    return getattr(module, name, None)


def use_compiled(package: str, path: list[str]) -> None:
    """Put the package's compiled modules first on its search path when they are current."""
    folder = FOLDER / package.replace(".", "/")
    if compiled_current() and folder.is_dir():
        if str(FOLDER) not in sys.path:
            sys.path.append(str(FOLDER))  # mypyc's shared library of the build, a top-level module
        path.insert(0, str(folder))
