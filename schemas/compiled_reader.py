"""A generated Avro reader for one schema, for records written with that same schema.

The counterpart of schemas/compiled.py: Python source made once from the `.avsc`, returning what
fastavro's `schemaless_reader` returns (records as dicts, union values bare, enums as their symbol),
about three times faster on the Event record (its many optional strings are a byte or two of framing
each, read inline). Records written with another version of the schema still go through fastavro,
which resolves them. Errors: EOFError when the bytes end early, ValueError for a bad union or enum
index, a negative length or text that is not UTF-8 (the codec maps both to its decode reasons).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from schemas.compiled import SchemaNames
from schemas.native import generated

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "string", "bytes"}
_TYPES = {"boolean": "bool", "int": "int", "long": "int", "float": "float", "double": "float", "string": "str",
          "bytes": "bytes", "fixed": "bytes", "enum": "str", "record": "dict[str, Any]", "map": "dict[str, Any]",
          "array": "list[Any]", "null": "None"}
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """Avro `long` at `pos`: little-endian base-128, then zigzag."""
    shift = n = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return (n >> 1) ^ -(n & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


class _Generator(SchemaNames):
    def __init__(self, omit_null: bool, only: frozenset[str] | None = None) -> None:
        super().__init__()
        self.omit_null = omit_null
        self.only = only  # the top record's fields to read; the others are stepped over
        self.top: str | None = None
        self.functions: dict[str, list[str]] = {}
        self.consts: dict[str, Any] = {"_long": _long, "_f": struct.Struct("<f").unpack_from,
                                       "_d": struct.Struct("<d").unpack_from, "EOFError": EOFError, "Any": Any}
        self.counter = 0
        self.types: dict[str, str] = {}  # local -> its Python type, declared at the top of its function

    def note(self, target: str, kind: str) -> None:
        """Record a local's type (a local given two types is Any); subscript targets need none."""
        if target.isidentifier():
            self.types[target] = kind if self.types.get(target, kind) == kind else "Any"

    def resolve(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            return self.named.get(full) or self.named[schema]
        if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
            return self.resolve(schema["type"], namespace)
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"]
        return schema

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def read_long(self, target: str, ind: str) -> list[str]:
        """One and two bytes inline (lengths of most strings and JSON parts); longer ones call _long."""
        self.note(target, "int")
        return [f"{ind}b = d[pos]",
                f"{ind}if b < 128:", f"{ind}    {target} = (b >> 1) ^ -(b & 1)", f"{ind}    pos += 1",
                f"{ind}elif d[pos + 1] < 128:",
                f"{ind}    b = (b & 127) | (d[pos + 1] << 7)", f"{ind}    {target} = (b >> 1) ^ -(b & 1)",
                f"{ind}    pos += 2",
                f"{ind}else:", f"{ind}    {target}, pos = _long(d, pos)"]

    def emit(self, schema: Any, target: str, ns: str, ind: str) -> list[str]:
        """Lines that read one value of `schema` at `pos` into local `target`."""
        schema = self.resolve(schema, ns)
        kind = "union" if isinstance(schema, list) else schema if isinstance(schema, str) else schema["type"]
        self.note(target, _TYPES.get(kind, "Any"))
        if kind == "null":
            return [f"{ind}{target} = None"]
        if kind == "boolean":
            return [f"{ind}{target} = d[pos] == 1", f"{ind}pos += 1"]
        if kind in ("int", "long"):
            return self.read_long(target, ind)
        if kind in ("float", "double"):
            size, unpack = (4, "_f") if kind == "float" else (8, "_d")
            return [f"{ind}if pos + {size} > end: raise EOFError", f"{ind}{target} = {unpack}(d, pos)[0]",
                    f"{ind}pos += {size}"]
        if kind in ("string", "bytes"):
            n = self.var()
            text = ".decode()" if kind == "string" else ""
            return [*self.read_long(n, ind), f"{ind}if {n} < 0: raise ValueError('negative length')",
                    f"{ind}if pos + {n} > end: raise EOFError", f"{ind}{target} = d[pos:pos + {n}]{text}",
                    f"{ind}pos += {n}"]
        if kind == "fixed":
            size = int(schema["size"])
            return [f"{ind}if pos + {size} > end: raise EOFError", f"{ind}{target} = d[pos:pos + {size}]",
                    f"{ind}pos += {size}"]
        if kind == "enum":
            i = self.var()
            symbols = tuple(schema["symbols"])
            return [*self.read_long(i, ind),
                    f"{ind}if not 0 <= {i} < {len(symbols)}: raise ValueError('bad enum index')",
                    f"{ind}{target} = {symbols!r}[{i}]"]
        if kind == "record":
            full = self.fullname(schema, ns)
            return [f"{ind}{target}, pos = {self.record(schema, full)}(d, pos, end)"]
        if kind in ("array", "map"):
            return self.block(schema, kind, target, ns, ind)
        if kind == "union":
            lines = self.union(schema, ind, lambda branch, inner: self.emit(branch, target, ns, inner))
            self.note(target, "Any")
            return lines
        raise ValueError(f"unsupported Avro type {kind!r}")

    def _into(self, target: str, ns: str) -> Callable[[Any, str], list[str]]:
        """A union branch's lines that set `target`, none for null (the key is left out)."""
        return lambda branch, inner: [] if branch == "null" else self.emit(branch, target, ns, inner)

    def union(self, schema: list[Any], ind: str, branch_lines: Callable[[Any, str], list[str]]) -> list[str]:
        """Read the branch index, then each branch's lines (`branch_lines(branch, indent)`)."""
        i = self.var()
        lines = self.read_long(i, ind)
        for index, branch in enumerate(schema):
            lines += [f"{ind}{'if' if index == 0 else 'elif'} {i} == {index}:",
                      *(branch_lines(branch, ind + "    ") or [f"{ind}    pass"])]
        return [*lines, f"{ind}else: raise ValueError('bad union index')"]

    def skip(self, schema: Any, ns: str, ind: str) -> list[str]:
        """Lines that step over one value of `schema` at `pos` (checked as reading it would, not kept)."""
        schema = self.resolve(schema, ns)
        kind = "union" if isinstance(schema, list) else schema if isinstance(schema, str) else schema["type"]
        if kind in ("string", "bytes"):
            n = self.var()
            return [*self.read_long(n, ind), f"{ind}if {n} < 0: raise ValueError('negative length')",
                    f"{ind}if pos + {n} > end: raise EOFError", f"{ind}pos += {n}"]
        if kind == "union":
            return self.union(schema, ind, lambda branch, inner: self.skip(branch, ns, inner))
        if kind == "null":
            return []
        return self.emit(schema, self.var(), ns, ind)  # read and dropped: numbers, enums, records, blocks

    def block(self, schema: Mapping[str, Any], kind: str, target: str, ns: str, ind: str) -> list[str]:
        count, item, key, skip = self.var(), self.var(), self.var(), self.var()
        lines = [f"{ind}{target} = {{}}" if kind == "map" else f"{ind}{target} = []", f"{ind}while True:"]
        lines += self.read_long(count, ind + "    ")
        lines += [f"{ind}    if {count} == 0: break", f"{ind}    if {count} < 0:", f"{ind}        {count} = -{count}"]
        lines += self.read_long(skip, ind + "        ")
        lines += [f"{ind}    for _ in range({count}):"]
        if kind == "map":
            lines += self.emit("string", key, ns, ind + "        ")
            lines += self.emit(schema["values"], item, ns, ind + "        ")
            lines += [f"{ind}        {target}[{key}] = {item}"]
        else:
            lines += self.emit(schema["items"], item, ns, ind + "        ")
            lines += [f"{ind}        {target}.append({item})"]
        return lines

    def record(self, schema: Mapping[str, Any], full: str) -> str:
        func = "_r_" + full.replace(".", "_")
        if func in self.functions:
            return func
        self.named[full] = schema
        self.named.setdefault(str(schema["name"]), schema)
        self.functions[func] = []
        ns = full.rsplit(".", 1)[0] if "." in full else ""
        lines = [f"def {func}(d, pos, end):", "    r = {}"]
        if self.top is None:
            self.top = func
        for field in schema["fields"]:
            if func == self.top and self.only is not None and field["name"] not in self.only:
                lines += self.skip(field["type"], ns, "    ")
                continue
            kind = self.resolve(field["type"], ns)
            if self.omit_null and isinstance(kind, list) and "null" in kind:  # a null leaves the key out
                lines += self.union(kind, "    ", self._into(f"r[{field['name']!r}]", ns))
                continue
            v = self.var()
            lines += self.emit(field["type"], v, ns, "    ")
            lines += [f"    r[{field['name']!r}] = {v}"]
        body = lines[2:]
        used = sorted(set(re.findall(r"\b(v\d+)\b", "\n".join(body))), key=lambda v: int(v[1:]))
        self.functions[func] = [f"def {func}(d: bytes, pos: int, end: int) -> tuple[dict[str, Any], int]:",
                                "    r: dict[str, Any] = {}", "    b: int",
                                *(f"    {v}: {self.types.get(v, 'Any')}" for v in used), *body, "    return r, pos"]
        return func


def reader_source(schema: Mapping[str, Any], omit_null: bool = False,
                  only: Iterable[str] | None = None) -> tuple[str, str, dict[str, Any]]:
    """(source, name of the top record's function, the names it uses) of the reader `compile_reader` makes.
    The source is typed (annotated locals), so mypyc can compile it ahead of time (`module_source`)."""
    gen = _Generator(omit_null, frozenset(only) if only is not None else None)
    namespace = str(schema.get("namespace", ""))
    gen.declare(dict(schema), namespace)
    top = gen.record(schema, gen.fullname(schema, namespace))
    return "\n".join(line for lines in gen.functions.values() for line in lines), top, gen.consts


def reader_key(schema: Mapping[str, Any], omit_null: bool = False, only: Iterable[str] | None = None) -> str:
    """What names a reader built ahead of time: the schema and the options, hashed."""
    spec = json.dumps([schema, omit_null, sorted(only) if only is not None else None], sort_keys=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:20]


def module_source(schema: Mapping[str, Any], omit_null: bool = False, only: Iterable[str] | None = None) -> str:
    """A module of the reader, for `eventrouter.dev.native` to compile as `schemas/_aot_<reader_key>.py`."""
    source, top, _ = reader_source(schema, omit_null, only)
    return "\n".join([
        f'"""Avro reader of {top}, generated by schemas/compiled_reader.py."""',
        "", "from __future__ import annotations", "", "import struct", "from typing import Any", "",
        "from schemas.compiled_reader import _long", "",
        '_f = struct.Struct("<f").unpack_from', '_d = struct.Struct("<d").unpack_from', "", "",
        source.replace("\ndef ", "\n\n\ndef "), "", "", f"READ = {top}", ""])


def compile_reader(schema: Mapping[str, Any], omit_null: bool = False, only: Iterable[str] | None = None) -> Reader:
    """`read(data, offset) -> (record, end offset)` for records written with `schema` itself.
    `omit_null`: a record field whose value is null is left out of its dict rather than set to None
    (what a reader that drops the nulls anyway saves building: most of an event's fields are null).
    `only`: the names of the record's fields to return; the others are stepped over (still checked
    for length and union index, so a truncated or corrupt record is refused as before).
    The native build compiles the readers the hot path uses (eventrouter/dev/native.py); any other is exec'd."""
    record_reader = generated(reader_key(schema, omit_null, only), "READ")
    if record_reader is None:
        source, top, scope = reader_source(schema, omit_null, only)
        scope = dict(scope)
        exec(compile(source, f"<avro reader {top}>", "exec"), scope)  # source of our own making, from the .avsc
        record_reader = scope[top]
    reader = record_reader

    def read(data: bytes, offset: int) -> tuple[dict[str, Any], int]:
        try:
            result: tuple[dict[str, Any], int] = reader(data, offset, len(data))
        except IndexError:
            raise EOFError("record body ends early") from None
        return result
    return read
