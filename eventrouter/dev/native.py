"""Build the compiled hot path: `python -m eventrouter.dev.native` (run by `make run` and `make test`).

mypyc (part of mypy) compiles the modules below, which our code already type-checks strictly, to C
extensions. They are built in a scratch copy of the packages and moved to `.eventrouter/native/` with a
manifest of the sources' hashes; schemas/native.py uses them only while those sources are unchanged.
Without a C compiler, or if the build fails, everything runs as plain Python (same behaviour, more CPU);
the build says so and exits 0.

Chosen by profile: where the worker spends its time per event (decode, checks, playbooks, Outbound
records) and the forwarders' per-record decode and delivery loop. Routing one chain event on one core:
76-96 us as Python, 51-62 us compiled (bench/calibrate.py, same minutes); side by side, a worker at 2.5k
events/s 164.5 -> 131.5 us per event, a forwarder at 5k/s 42.5 -> 36.5. A class that interpreted code
subclasses must be compiled with it (replay.py's ReplayForwarder); modules whose names tests replace, and
the vendor modules (mypyc does not handle their pydantic settings classes), stay Python.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schemas.native import FOLDER, MANIFEST, ROOT, build_current, source_hash

MODULES = (
    "schemas/codec.py",
    "schemas/compiled.py",
    "schemas/compiled_reader.py",
    "schemas/direct.py",
    "schemas/direct_outbound.py",
    "schemas/envelope.py",
    "schemas/validation.py",
    "streams/dedup.py",
    "streams/normalize.py",
    "schemas/playbook/route.py",
    "streams/router.py",
    "schemas/playbook/sections.py",
    "schemas/playbook/paths.py",
    "schemas/playbook/transforms.py",
    "streams/worker.py",
    "forwarders/delivery.py",
    "forwarders/lanes.py",
    "forwarders/outcomes.py",
    "forwarders/records.py",
    "eventrouter/ops/replay.py",
    "forwarders/planning.py",
    "forwarders/runner.py",
    "forwarders/state.py",
    "producers/messages.py",
)
PACKAGES = ("schemas", "streams", "forwarders", "producers", "eventrouter")


def avro_modules() -> dict[str, str]:
    """The Avro readers and writers of the hot path, generated from the schemas and compiled with the modules
    above (the same code the codec otherwise execs, 4-5x faster compiled): path -> source. The worker reads
    Events (EventCodec), the forwarders the Outbound fields of an Item, replay and dead letters whole
    Outbounds; the SDK writes each call's context, the gateway whole Events."""
    from forwarders.records import ITEM_FIELDS
    from schemas import compiled, compiled_reader
    from schemas.codec import load_schema

    specs = [("event", True, None), ("outbound", False, ITEM_FIELDS), ("outbound", False, None)]
    readers = {f"schemas/_aot_{compiled_reader.reader_key(schema, omit_null, only)}.py":
               compiled_reader.module_source(schema, omit_null, only)
               for name, omit_null, only in specs for schema in [load_schema(name)]}
    event = load_schema("event")  # the SDK's context and the gateway's events
    return {**readers, f"schemas/_aot_{compiled.writer_key(event)}.py": compiled.module_source(event)}


def section_modules() -> dict[str, str]:
    """The starter kits' playbook sections and the example config's (schemas/playbook/sections.py), compiled like the
    Avro code (a section's code 1.4-1.8x faster compiled): path -> source. A section is found by its text's
    hash, so a customised one is exec'd instead."""
    from schemas.config import parse_config
    from schemas.errors import ConfigurationError
    from schemas.playbook.sections import section_key, section_module, sections_of, starter_sections

    sections = starter_sections()
    example = ROOT / "examples" / "eventrouter.yaml"
    try:
        sections += [s for i in parse_config(example.read_text()).integrations for s in sections_of(i.playbook)]
    except (OSError, ConfigurationError) as exc:  # the starter kits alone, then; the build goes on
        print(f"the example config's sections are not compiled: {exc}", file=sys.stderr)
    sources = [section_module(section)[0] for section in sections]
    return {f"schemas/playbook/_aot_{section_key(source)}.py": source for source in sources}


def build() -> bool:
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="eventrouter-native-"))
    try:
        for package in PACKAGES:  # mypyc type-checks what the modules import, so all of it goes along
            shutil.copytree(ROOT / package, scratch / package, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "pyproject.toml", scratch)  # the mypy settings
        avro = avro_modules() | section_modules()
        for path, source in avro.items():
            (scratch / path).write_text(source)
        done = subprocess.run([sys.executable, "-m", "mypyc", *MODULES, *avro], cwd=scratch, capture_output=True,
                              text=True)
        if done.returncode != 0:
            print(f"compiled modules not built (plain Python is used): {(done.stdout + done.stderr)[-2000:]}",
                  file=sys.stderr)
            return False
        shutil.rmtree(FOLDER, ignore_errors=True)
        FOLDER.mkdir(parents=True)
        built = [p for p in scratch.rglob("*.so") if "build" not in p.relative_to(scratch).parts]
        for so in built:
            target = FOLDER / so.relative_to(scratch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(so), target)
        MANIFEST.write_text(json.dumps({"python": sys.version, "sources": {m: source_hash(ROOT / m) for m in MODULES},
                                        "generated": sorted(avro)}, indent=1))
        print(f"compiled {len(MODULES)} modules and {len(avro)} generated ones (Avro readers and writers, playbook "
              f"sections) in "
              f"{time.monotonic() - started:.0f} s into {FOLDER}")
        return True
    except OSError as exc:
        print(f"compiled modules not built (plain Python is used): {exc}", file=sys.stderr)
        return False
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def current() -> bool:
    """The build is there, of these sources, and of this list of modules and generated Avro modules."""
    try:
        manifest = json.loads(MANIFEST.read_text())
        listed, avro = set(manifest["sources"]), set(manifest.get("generated", ()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return build_current() and listed == set(MODULES) and avro == set(avro_modules()) | set(section_modules())


if __name__ == "__main__":
    if os.environ.get("EVENTROUTER_PURE") == "1":  # plain Python asked for: the build is left as it is
        print("EVENTROUTER_PURE=1: plain Python; the compiled modules are neither checked nor built")
    elif not current():
        build()
