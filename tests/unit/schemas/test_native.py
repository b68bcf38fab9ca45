"""Compiled modules are used only when built from exactly the sources there are now (schemas/native.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas import native

REPO = Path(__file__).resolve().parents[3]


def _manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sources: dict[str, str], python: str) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"python": python, "sources": sources}))
    monkeypatch.setattr(native, "MANIFEST", manifest)
    monkeypatch.setattr(native, "_verdict", None)
    monkeypatch.delenv("EVENTROUTER_PURE", raising=False)


def test_a_build_of_these_very_sources_is_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _manifest(tmp_path, monkeypatch, {"schemas/topics.py": native.source_hash(REPO / "schemas/topics.py")},
              sys.version)
    assert native.compiled_current()


@pytest.mark.parametrize("case", ["edited source", "another python", "missing source", "pure asked"])
def test_anything_else_runs_plain_python(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digest = native.source_hash(REPO / "schemas/topics.py")
    sources = {"schemas/topics.py": "0" * 64 if case == "edited source" else digest}
    if case == "missing source":
        sources["schemas/gone.py"] = digest
    _manifest(tmp_path, monkeypatch, sources, "2.7.18" if case == "another python" else sys.version)
    if case == "pure asked":
        monkeypatch.setenv("EVENTROUTER_PURE", "1")
    assert not native.compiled_current()


def test_no_build_is_plain_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "MANIFEST", tmp_path / "absent.json")
    monkeypatch.setattr(native, "_verdict", None)
    assert not native.compiled_current()


def _probe(code: str, cwd: Path = REPO) -> list[str]:
    """What `code` prints in a fresh interpreter that may use the build (skipped where there is none, or an
    outdated one that the package ignores, but on CI: `make test` builds it first)."""
    if not os.environ.get("CI") and not native.build_current():
        pytest.skip("no current compiled build here (`make native`)")
    env = {k: v for k, v in os.environ.items() if k not in ("EVENTROUTER_PURE", "PYTHONPATH")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd,
                          env=env).stdout.split()


def test_outside_the_repo_the_build_never_hides_a_package(tmp_path: Path) -> None:
    """As the console script runs (any cwd, the repo root not on sys.path, the packages found through the
    install): every package is the real one, with its compiled modules, and the build folder is no path entry
    (its package folders, without `__init__.py`, would load as empty namespace packages)."""
    out = _probe("import sys, producers, streams.router; from producers import Analytics; "
                 "from forwarders import records; from schemas import EventCodec; "
                 "print(*(sys.modules[p].__file__ for p in ('schemas', 'producers', 'streams', 'forwarders')), "
                 f"streams.router.__file__, any(entry.startswith({str(native.FOLDER)!r}) for entry in sys.path), "
                 f"{str(REPO)!r} in sys.path)", cwd=tmp_path)
    assert [Path(p).relative_to(REPO).as_posix() for p in out[:4]] == [
        f"{package}/__init__.py" for package in ("schemas", "producers", "streams", "forwarders")], out
    assert out[4].endswith(".so") and out[5:] == ["False", "False"], out


def test_pure_python_asked_leaves_the_build_alone() -> None:
    """`EVENTROUTER_PURE=1 make ...` neither checks nor rebuilds the compiled modules (a rebuild takes minutes)."""
    done = subprocess.run([sys.executable, "-m", "eventrouter.dev.native"], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "EVENTROUTER_PURE": "1"}, timeout=60)
    assert done.returncode == 0 and "neither checked nor built" in done.stdout, done.stdout + done.stderr


def test_on_ci_the_hot_path_runs_compiled() -> None:
    """`make test` builds it first; on CI (a C compiler there) a build that failed or went unused fails here."""
    out = _probe("import streams.router, forwarders.records, sys; from eventrouter.dev.native import avro_modules; "
                 "import schemas.codec as c; c.AvroCodec(c.load_schema('event'), omit_null=True); "
                 "from schemas import outbound_codec; outbound_codec(fields=forwarders.records.ITEM_FIELDS); "
                 "outbound_codec(); c.AvroCodec(c.load_schema('event')); "
                 "print(streams.router.__file__, forwarders.records.__file__, "
                 "*(sys.modules[p[:-3].replace('/', '.')].__file__ for p in avro_modules()))")
    assert len(out) == 6 and all(path.endswith(".so") for path in out), out  # the generated Avro code too


def test_the_unit_tests_pass_as_plain_python_too() -> None:
    """What runs from a wheel or the Docker image (no build): the same tests, nothing compiled."""
    if os.environ.get("EVENTROUTER_PURE") == "1":
        pytest.skip("already plain Python")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/unit"],
                          cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "EVENTROUTER_PURE": "1"})  # this test skips itself in there
    assert done.returncode == 0, done.stdout[-3000:]


def test_on_ci_the_starter_kits_playbook_sections_run_compiled() -> None:
    """The native build compiles every starter kit's sections (eventrouter/dev/native.py section_modules); a
    config that uses a starter kit as shipped finds each of its sections there."""
    out = _probe("import sys; from schemas.playbook.sections import built, section_module, starter_sections; "
                 "found = [built(section_module(s)[0]) for s in starter_sections()]; "
                 "print(len(found), sum(f is not None for f in found), "
                 "sys.modules[found[0].__module__].__file__ if found[0] else '-')")
    assert int(out[0]) >= 20 and out[0] == out[1] and out[2].endswith(".so"), out
