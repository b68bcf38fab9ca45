"""Static Avro schema compatibility, by the resolution rules of the Avro specification.

`reader_problems(reader, writer)` lists why data written with `writer` could not be read with
`reader` (empty = compatible). Full compatibility = no problems in either direction, which is
what the contract keeps between the current schema and every released version.
"""

from __future__ import annotations

from typing import Any

from fastavro.schema import expand_schema

_PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
    ("float", "double"), ("string", "bytes"), ("bytes", "string"),
}
_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


def _norm(schema: Any) -> Any:
    """Strip a {"type": "long"}-style wrapper around primitives."""
    if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
        return schema["type"]
    return schema


def _kind(schema: Any) -> str:
    schema = _norm(schema)
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, str):
        return schema
    return str(schema["type"])


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _problems(reader: Any, writer: Any, path: str) -> list[str]:
    reader, writer = _norm(reader), _norm(writer)
    rk, wk = _kind(reader), _kind(writer)
    if wk == "union":
        out: list[str] = []
        for branch in writer:
            out += _problems(reader, branch, f"{path}<{_kind(branch)}>")
        return out
    if rk == "union":
        for branch in reader:
            if not _problems(branch, writer, path):
                return []
        return [f"{path}: no branch of the reader union reads writer type {wk}"]
    if rk != wk:
        if (wk, rk) in _PROMOTIONS:
            return []
        return [f"{path}: writer type {wk} cannot be read as {rk}"]
    if rk == "record":
        if _short(reader["name"]) != _short(writer["name"]):
            return [f"{path}: record name {writer['name']} != {reader['name']}"]
        writer_fields = {f["name"]: f for f in writer["fields"]}
        out = []
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            match = next((writer_fields[n] for n in names if n in writer_fields), None)
            if match is None:
                if "default" not in field:
                    out.append(f"{path}.{field['name']}: reader field has no default and the writer lacks it")
                continue
            out += _problems(field["type"], match["type"], f"{path}.{field['name']}")
        return out
    if rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        if missing and "default" not in reader:
            return [f"{path}: writer enum symbols {sorted(missing)} unknown to the reader (no default)"]
        return []
    if rk == "array":
        return _problems(reader["items"], writer["items"], f"{path}[]")
    if rk == "map":
        return _problems(reader["values"], writer["values"], f"{path}{{}}")
    if rk == "fixed" and reader["size"] != writer["size"]:
        return [f"{path}: fixed size {writer['size']} != {reader['size']}"]
    return []


def reader_problems(reader: dict[str, Any], writer: dict[str, Any]) -> list[str]:
    """Why `reader` cannot read data written with `writer`; empty when it can."""
    return _problems(expand_schema(reader), expand_schema(writer), str(reader.get("name", "")))


def full_problems(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """Backward (new reads old) and forward (old reads new) problems together."""
    return ([f"backward: {p}" for p in reader_problems(new, old)]
            + [f"forward: {p}" for p in reader_problems(old, new)])
