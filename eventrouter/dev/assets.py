"""Refresh the console's front-end libraries: `python -m eventrouter.dev.assets` (`make assets`).

The console serves htmx and CodeMirror from its own package (eventrouter/console/static/vendor/), never
from a CDN, so it works offline and under a Content-Security-Policy of 'self'. They are npm packages pinned
exactly in eventrouter/console/assets/package.json, with its package-lock.json. This step installs them as
locked (`npm ci`, no install scripts), copies htmx's build, bundles the parts of CodeMirror that
assets/codemirror.mjs names into one script with esbuild (pinned there too), and writes beside each file
its licences (`<file>.LICENSE.txt`: every package the file holds, its version and its licence text), then a
manifest: for each file its sha256, the packages in it with their versions, and the bundler's version.
tests/unit/eventrouter/console/test_assets.py checks the manifest against the files and the pins. The
output is committed: running, testing or installing the console never needs npm; only this refresh does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CONSOLE = Path(__file__).resolve().parent.parent / "console"
ASSETS = CONSOLE / "assets"
VENDOR = CONSOLE / "static" / "vendor"
MANIFEST = VENDOR / "manifest.json"
LICENCE_SUFFIX = ".LICENSE.txt"
_LICENCE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "license")


def package_of(path: str) -> str:
    """The npm package a bundled source file belongs to: `node_modules/@lezer/lr/dist/index.js` -> `@lezer/lr`."""
    parts = path.rsplit("node_modules/", 1)[-1].split("/")
    return "/".join(parts[:2]) if parts[0].startswith("@") else parts[0]


def _npm(*args: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed to refresh the vendored assets (Node 20 and npm); the committed ones need nothing")
    subprocess.run([npm, *args], cwd=ASSETS, check=True)


def _bundle_codemirror(out: Path) -> list[str]:
    """esbuild's one-file build of codemirror.mjs (an IIFE setting `window.CM`); the packages in its output."""
    with tempfile.TemporaryDirectory() as scratch:
        meta = Path(scratch) / "meta.json"
        subprocess.run([str(ASSETS / "node_modules" / ".bin" / "esbuild"), "codemirror.mjs", "--bundle",
                        "--format=iife", "--global-name=CM", "--minify", "--target=es2020", "--legal-comments=none",
                        f"--metafile={meta}", f"--outfile={out}"], cwd=ASSETS, check=True)
        inputs = next(iter(json.loads(meta.read_text())["outputs"].values()))["inputs"]
    # tree-shaken modules are listed with nothing in the output: their licence is not owed
    return sorted({package_of(p) for p, used in inputs.items() if "node_modules/" in p and used["bytesInOutput"]})


def _installed(package: str) -> tuple[str, str, str]:
    """A package as installed: its version, its SPDX licence and its licence text."""
    folder = ASSETS / "node_modules" / package
    meta = json.loads((folder / "package.json").read_text())
    text = next((folder / n).read_text() for n in _LICENCE_FILES if (folder / n).is_file())
    return meta["version"], meta["license"], text


def _vendor(name: str, packages: list[str]) -> dict[str, Any]:
    """Writes `name`'s licences beside it; its manifest entry."""
    versions = {}
    sections = []
    for package in packages:
        version, spdx, text = _installed(package)
        versions[package] = version
        sections.append(f"{package} {version} ({spdx})\n\n{text.strip()}\n")
    (VENDOR / (name + LICENCE_SUFFIX)).write_text(("\n" + "-" * 72 + "\n\n").join(sections))
    return {"sha256": hashlib.sha256((VENDOR / name).read_bytes()).hexdigest(), "packages": versions}


def main() -> None:
    _npm("ci", "--ignore-scripts", "--no-audit", "--no-fund")
    shutil.rmtree(VENDOR, ignore_errors=True)
    VENDOR.mkdir(parents=True)
    shutil.copyfile(ASSETS / "node_modules" / "htmx.org" / "dist" / "htmx.min.js", VENDOR / "htmx.min.js")
    manifest = {"htmx.min.js": _vendor("htmx.min.js", ["htmx.org"]),
                "codemirror.js": _vendor("codemirror.js", _bundle_codemirror(VENDOR / "codemirror.js"))}
    manifest["codemirror.js"]["built_with"] = {"esbuild": _installed("esbuild")[0]}
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name, entry in manifest.items():
        packages = ", ".join(f"{p} {v}" for p, v in entry["packages"].items())
        print(f"static/vendor/{name}: {(VENDOR / name).stat().st_size // 1024} KB ({packages})")


if __name__ == "__main__":
    main()
