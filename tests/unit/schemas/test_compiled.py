"""The generated Avro writer must produce exactly fastavro's bytes, and refuse what fastavro refuses."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import EncodeError, load_schema
from schemas.compiled import compile_writer
from schemas.compiled import module_source as writer_module
from schemas.compiled_reader import compile_reader, module_source

EVERY_TYPE: dict[str, Any] = {
    "type": "record", "name": "All", "namespace": "t",
    "fields": [
        {"name": "b", "type": "boolean"}, {"name": "i", "type": "int"}, {"name": "l", "type": "long"},
        {"name": "f", "type": "float"}, {"name": "d", "type": "double"}, {"name": "s", "type": "string"},
        {"name": "y", "type": "bytes"}, {"name": "n", "type": "null"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "x", "type": {"type": "fixed", "name": "X", "size": 4}},
        {"name": "a", "type": {"type": "array", "items": "long"}},
        {"name": "m", "type": {"type": "map", "values": ["null", "string", "double"]}},
        {"name": "u", "type": ["null", "long", "string", "E"], "default": None},
        {"name": "r", "type": ["null", {"type": "record", "name": "Node", "fields": [
            {"name": "label", "type": "string"},
            {"name": "next", "type": ["null", "Node"], "default": None}]}], "default": None},
        {"name": "withdefault", "type": "string", "default": "dflt"},
    ],
}


def _random(schema: Any, rng: random.Random, named: dict[str, Any], depth: int = 0) -> Any:
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        choices = [b for b in schema if depth < 3 or b == "null"] or schema
        return _random(rng.choice(choices), rng, named, depth + 1)
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, (dict, list)):
        return _random(kind, rng, named, depth)
    if kind == "null":
        return None
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(2**31), 2**31 - 1)
    if kind == "long":
        return rng.choice([0, -1, 1, 63, 64, -65, 2**63 - 1, -(2**63), rng.randint(-(2**40), 2**40)])
    if kind in ("float", "double"):
        return rng.choice([0.0, -1.5, 3.25, 1e300 if kind == "double" else 1e30, rng.random()])
    if kind == "string":
        text = "".join(rng.choice("ab\u00e9\u4e2d\U0001F600\x00") for _ in range(rng.choice([0, 3, 70])))
        return text * rng.choice([1, 1, 300])
    if kind == "bytes":
        return rng.randbytes(rng.choice([0, 5, 300]))
    if kind == "enum":
        named[schema["name"]] = schema
        return rng.choice(schema["symbols"])
    if kind == "fixed":
        named[schema["name"]] = schema
        return rng.randbytes(schema["size"])
    if kind == "array":
        return [_random(schema["items"], rng, named, depth + 1) for _ in range(rng.choice([0, 2, 9]))]
    if kind == "map":
        return {f"k{i}": _random(schema["values"], rng, named, depth + 1) for i in range(rng.choice([0, 1, 9]))}
    if kind == "record":
        named[schema["name"]] = schema
        named[f"{schema.get('namespace', 't')}.{schema['name']}"] = schema
        return {f["name"]: _random(f["type"], rng, named, depth + 1) for f in schema["fields"]
                if "default" not in f or rng.random() < 0.8}
    raise AssertionError(kind)


def _fastavro(schema: dict[str, Any], record: Any) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def _compiled(schema: dict[str, Any], record: Any) -> bytes:
    out = bytearray()
    compile_writer(schema)(record, out)
    return bytes(out)


SCHEMAS = [EVERY_TYPE, load_schema("event"), load_schema("outbound"), load_schema("deadletter")]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s["name"])
def test_bytes_match_fastavro_on_random_records(schema: dict[str, Any]) -> None:
    rng = random.Random(7)
    write = compile_writer(schema)
    parsed = parse_schema(schema)
    for _ in range(300):
        record = _random(schema, rng, {})
        out = bytearray()
        write(record, out)
        buf = io.BytesIO()
        schemaless_writer(buf, parsed, record)
        assert bytes(out) == buf.getvalue()


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s["name"])
def test_the_generated_reader_reads_what_fastavro_reads(schema: dict[str, Any]) -> None:
    rng = random.Random(11)
    read = compile_reader(schema)
    parsed = parse_schema(schema)
    for _ in range(300):
        data = _fastavro(schema, _random(schema, rng, {}))
        record, end = read(b"xx" + data, 2)
        assert end == len(data) + 2
        assert record == schemaless_reader(io.BytesIO(data), parsed, None)


def _lean(schema: Any, value: Any) -> Any:
    """A record of the Event schema as the omit_null reader makes it: record fields whose value is
    null left out, at every depth (maps keep their values)."""
    if isinstance(schema, list):  # a union: the Event schema has at most one record branch in each
        branch = next((b for b in schema if isinstance(b, dict) and b.get("type") == "record"), None)
        return _lean(branch, value) if branch is not None and isinstance(value, dict) else value
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {f["name"]: _lean(f["type"], value[f["name"]]) for f in schema["fields"]
                if value[f["name"]] is not None}
    return value


def test_the_reader_that_omits_nulls_leaves_out_exactly_the_null_fields() -> None:
    schema = load_schema("event")
    rng = random.Random(13)
    read, full = compile_reader(schema, omit_null=True), compile_reader(schema)
    for _ in range(300):
        data = _fastavro(schema, _random(schema, rng, {}))
        lean, end = read(data, 0)
        assert end == len(data)
        assert lean == _lean(schema, full(data, 0)[0])


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s["name"])
def test_a_reader_of_some_fields_reads_them_and_steps_over_the_rest(schema: dict[str, Any]) -> None:
    rng = random.Random(17)
    names = [f["name"] for f in schema["fields"]]
    for _ in range(100):
        wanted = set(rng.sample(names, rng.randrange(0, len(names) + 1)))
        some, full = compile_reader(schema, only=wanted), compile_reader(schema)
        data = _fastavro(schema, _random(schema, rng, {}))
        record, end = full(data, 0)
        assert some(data, 0) == ({k: v for k, v in record.items() if k in wanted}, end)
        for cut in sorted({len(data) // 3, len(data) - 1}):
            with pytest.raises((EOFError, ValueError, UnicodeDecodeError)):
                some(data[:cut], 0)


def test_the_generated_reader_refuses_short_or_bad_bytes() -> None:
    schema = SCHEMAS[0]
    read = compile_reader(schema)
    data = _fastavro(schema, _random(schema, random.Random(3), {}))
    for cut in range(len(data)):
        with pytest.raises((EOFError, ValueError, UnicodeDecodeError)):
            read(data[:cut], 0)


def test_tuple_notation_names_the_record_branch() -> None:
    record = {"b": True, "i": 1, "l": 2, "f": 1.0, "d": 2, "s": "", "y": b"", "n": None, "e": "B", "x": b"abcd",
              "a": [], "m": {}, "r": ("t.Node", {"label": "x", "next": ("t.Node", {"label": "y"})})}
    assert _compiled(EVERY_TYPE, record) == _fastavro(EVERY_TYPE, record)


@pytest.mark.parametrize(("field", "value", "words"), [
    ("i", 2**31, "i: expected int"), ("l", True, "l: expected long"), ("l", 2**63, "l: expected long"),
    ("s", 5, "s: expected string"), ("s", "\ud800", "s: not valid text"), ("e", "Z", "e: not a symbol"),
    ("x", b"abc", "x: expected fixed(4)"), ("a", [1, "2"], "a[]: expected long"),
    ("m", {"k": [1]}, "m[]: expected one of the union branches"), ("b", 1, "b: expected boolean"),
    ("u", 1.5, "u: expected one of the union branches"), ("r", ("t.Other", {}), "r: no union branch named t.Other"),
])
def test_bad_values_raise_encode_error_naming_the_field(field: str, value: Any, words: str) -> None:
    record = {"b": True, "i": 1, "l": 2, "f": 1.0, "d": 2.0, "s": "", "y": b"", "n": None, "e": "A", "x": b"abcd",
              "a": [], "m": {}}
    record[field] = value
    with pytest.raises(EncodeError, match=re.escape(words)):
        _compiled(EVERY_TYPE, record)


def test_missing_required_field_is_named() -> None:
    with pytest.raises(EncodeError, match="messageId: required field missing"):
        _compiled(load_schema("event"), {"type": "track"})


def test_long_bytes_are_the_varint_of_every_long() -> None:
    from schemas.compiled import _varint, long_bytes

    rng = random.Random(23)
    edges = [0, -1, 1, 2**20, 2**21, -(2**20) - 1, 2**63 - 1, -(2**63), 1_795_687_200_123]
    randoms = [rng.choice([rng.randrange(-2**63, 2**63), rng.randrange(-10**13, 10**13)]) for _ in range(20_000)]
    for n in edges + randoms:
        assert long_bytes(n) == _varint(n), n


def _module(source: str, name: str) -> Any:
    scope: dict[str, Any] = {"__name__": name}
    exec(compile(source, name, "exec"), scope)
    return scope


@pytest.mark.parametrize("spec", [(EVERY_TYPE, False, None), (load_schema("event"), True, None),
                                  (load_schema("outbound"), False, ("messageId", "payload", "timestamp"))],
                         ids=["every type", "event, nulls left out", "some outbound fields"])
def test_the_reader_module_built_ahead_of_time_reads_as_the_execd_one(spec: tuple[Any, bool, Any]) -> None:
    schema, omit_null, only = spec
    read = _module(module_source(schema, omit_null, only), "aot")["READ"]
    execd = compile_reader(schema, omit_null, only)
    rng = random.Random(19)
    for _ in range(200):
        data = _fastavro(schema, _random(schema, rng, {}))
        assert read(data, 0, len(data)) == execd(data, 0)


@pytest.mark.parametrize("schema", [EVERY_TYPE, load_schema("event")], ids=["every type", "event"])
def test_the_writer_module_built_ahead_of_time_writes_as_the_execd_one(schema: dict[str, Any]) -> None:
    writers = _module(writer_module(schema), "aot")["WRITERS"]
    write = writers[f"{schema['namespace']}.{schema['name']}"]
    rng = random.Random(23)
    for _ in range(200):
        record = _random(schema, rng, {})
        out = bytearray()
        write(record, out)
        assert bytes(out) == _fastavro(schema, record)


def test_the_reader_and_writer_modules_type_check_as_mypyc_compiles_them(tmp_path: Path) -> None:
    """mypyc trusts the declared types of the generated locals: a wrong one would fail at run time, compiled."""
    from mypy import api

    files = []
    for n, (schema, omit_null) in enumerate([(EVERY_TYPE, False), (load_schema("event"), True),
                                             (load_schema("outbound"), False), (load_schema("deadletter"), False)]):
        for kind, source in (("r", module_source(schema, omit_null)), ("w", writer_module(schema))):
            path = tmp_path / f"aot_{kind}{n}.py"
            path.write_text(source)
            files.append(str(path))
    out, err, status = api.run(["--strict", "--no-incremental", "--follow-imports=silent", *files])
    assert status == 0, out + err
