"""The console's vendored front-end files (eventrouter/console/static/vendor/, written by
`python -m eventrouter.dev.assets`) are the pinned npm packages, unchanged since that step, each with its
licences beside it; the docs name the versions; the package ships them; the pages load only files that are
there."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from fnmatch import fnmatch
from typing import Any

from eventrouter.dev.assets import ASSETS, CONSOLE, LICENCE_SUFFIX, MANIFEST, VENDOR, package_of

REPO = CONSOLE.parents[1]


def _manifest() -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(MANIFEST.read_text())
    return manifest


def _locked() -> dict[str, str]:
    """Every package in package-lock.json: name -> version."""
    packages = json.loads((ASSETS / "package-lock.json").read_text())["packages"]
    return {package_of(path): entry["version"] for path, entry in packages.items() if path}


def test_every_pin_is_exact_and_locked() -> None:
    declared = json.loads((ASSETS / "package.json").read_text())
    pins = {**declared["dependencies"], **declared["devDependencies"]}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", version) for version in pins.values()), pins
    assert {name: _locked()[name] for name in pins} == pins


def test_the_vendored_files_are_the_pinned_packages_unchanged_since_the_step() -> None:
    locked, pins = _locked(), json.loads((ASSETS / "package.json").read_text())["dependencies"]
    held: dict[str, str] = {}
    for name, entry in _manifest().items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == entry["sha256"], \
            f"static/vendor/{name} changed since `make assets` wrote it"
        assert {p: locked[p] for p in entry["packages"]} == entry["packages"], name
        assert {tool: locked[tool] for tool in entry.get("built_with", {})} == entry.get("built_with", {})
        held.update(entry["packages"])
    assert {name: held.get(name) for name in pins} == pins  # every pinned library is served


def test_every_vendored_file_has_the_licences_of_what_it_holds_beside_it() -> None:
    manifest = _manifest()
    expected = {MANIFEST.name} | set(manifest) | {name + LICENCE_SUFFIX for name in manifest}
    assert {p.name for p in VENDOR.iterdir()} == expected  # nothing unaccounted for
    for name, entry in manifest.items():
        licences = (VENDOR / (name + LICENCE_SUFFIX)).read_text()
        for package, version in entry["packages"].items():
            assert re.search(rf"^{re.escape(package)} {re.escape(version)} \(\S+\)\n\n\S", licences, re.M), \
                f"{name}: no licence for {package} {version}"


def test_the_docs_name_the_pinned_versions() -> None:
    declared = json.loads((ASSETS / "package.json").read_text())
    docs = (REPO / "docs" / "console.md").read_text()
    for name, version in {**declared["dependencies"], **declared["devDependencies"]}.items():
        assert f"`{name}` {version}" in docs, f"docs/console.md, Front-end assets: {name} {version}"


def test_the_package_ships_every_static_file() -> None:
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = globs["eventrouter.console"]
    for path in (CONSOLE / "static").rglob("*"):
        if path.is_file():
            where = path.relative_to(CONSOLE).as_posix()
            assert any(fnmatch(where, g) and where.count("/") == g.count("/") for g in shipped), where


def test_the_pages_load_only_static_files_that_are_there() -> None:
    for template in (CONSOLE / "templates").glob("*.html"):
        for url in re.findall(r'(?:src|href)="/static/([^"]+)"', template.read_text()):
            assert (CONSOLE / "static" / url).is_file(), f"{template.name}: /static/{url}"
