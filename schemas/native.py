"""Compiled hot-path modules, used when they were built from exactly these sources.

`python -m eventrouter.dev.native` (run by `make run` and `make test`) compiles the modules of the hot path
with mypyc into `.eventrouter/native/`, beside a manifest of their sources' SHA-256. A package that calls
`use_compiled(__name__, __path__)` first in its `__init__` then finds those modules there before its own
`.py` files, but only when every source listed still has the hash it was compiled from: an edited module
(or a checkout of another commit) runs as plain Python until the next build, never as stale code.
`EVENTROUTER_PURE=1` always runs plain Python. Installed from a wheel (no build folder): plain Python.

The build folder itself is never put on `sys.path`: its `schemas/`, `streams/`... folders hold only
`.so` files (no `__init__.py`), and as a path entry they would load as empty namespace packages ahead of
an editable install. mypyc's shared library (a top-level module, `<hash>__mypyc`) is found by its exact
name instead (`_SharedLibraries`); nothing else in the folder is importable except through a package's
own `__path__`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".eventrouter" / "native"
MANIFEST = FOLDER / "manifest.json"

_verdict: bool | None = None


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_current() -> bool:
    """True when compiled modules are to be used: not `EVENTROUTER_PURE=1`, and `build_current()`."""
    global _verdict
    if _verdict is None:
        _verdict = os.environ.get("EVENTROUTER_PURE") != "1" and build_current()
    return _verdict


def build_current() -> bool:
    """True when the build exists, matches this interpreter and every compiled source is unchanged."""
    try:
        manifest: dict[str, Any] = json.loads(MANIFEST.read_text())
        if manifest.get("python") != sys.version:
            return False
        return all(source_hash(ROOT / name) == digest for name, digest in manifest["sources"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def generated(key: str, name: str, package: str = "schemas") -> Any:
    """`name` of the module `<package>._aot_<key>` the native build generated (the Avro readers and writers in
    `schemas`, the playbook sections in `schemas.playbook`: eventrouter/dev/native.py), when the build is
    current and has it; None otherwise."""
    if not compiled_current():
        return None
    try:
        module = importlib.import_module(f"{package}._aot_{key}")
    except ImportError:
        return None
    return getattr(module, name, None)


class _SharedLibraries(importlib.abc.MetaPathFinder):
    """Finds mypyc's shared libraries of the build (top-level `<hash>__mypyc` extension modules) by their
    exact names, and nothing else."""

    def __init__(self, folder: Path) -> None:
        self.files = {path.name.split(".", 1)[0]: path for suffix in importlib.machinery.EXTENSION_SUFFIXES
                      for path in folder.glob(f"*__mypyc{suffix}")}

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        file = self.files.get(fullname)
        return None if file is None else importlib.util.spec_from_file_location(fullname, file)


def use_compiled(package: str, path: list[str]) -> None:
    """Put the package's compiled modules first on its search path when they are current."""
    folder = FOLDER / package.replace(".", "/")
    if compiled_current() and folder.is_dir():
        if not any(isinstance(finder, _SharedLibraries) for finder in sys.meta_path):
            sys.meta_path.append(_SharedLibraries(FOLDER))
        path.insert(0, str(folder))
