"""A schema-specialised Avro binary writer: Python source generated once per schema, then exec'd.

Why: fastavro's generic writer costs ~0.6 us per plain field and 1-2 us per nullable union, about
35 us for a small `Event`; the SDK's whole budget is ~25 us per call (docs/benchmarks.md). Code
generated for one schema does the same work in straight-line Python at a third of the cost. The
output is byte-identical to fastavro's `schemaless_writer` (tests/unit/schemas/test_compiled.py
checks it on random records of every contract schema), and bad values raise EncodeError naming the
field, as fastavro raises on them.

Supported: every Avro type the contract uses (null, boolean, int, long, float, double, string, bytes,
enum, fixed, record, array, map, union). Union branches are picked by Python type, in the same order
fastavro's validation picks them; a record branch may be given in fastavro's tuple notation
`(fullname, dict)`.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from schemas.errors import EncodeError
from schemas.native import generated

_PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "string", "bytes"}
_SMALL = 1 << 14  # lengths below this come from a table of ready-made varints


def _varint(n: int) -> bytes:
    """Avro `long`: zigzag, then little-endian base-128."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_LENGTHS = [_varint(i) for i in range(_SMALL)]
_HIGH: dict[int, bytes] = {}


def long_bytes(n: int) -> bytes:
    """`_varint(n)`, faster for the large values of a record (epoch-ms times, offsets): their low 21 bits
    are three bytes made at once, the rest (which changes every half hour of timestamps) is cached."""
    z = (n << 1) ^ (n >> 63)
    if z < 1 << 21:
        return _varint(n)
    high = z >> 21
    tail = _HIGH.get(high)
    if tail is None:
        if len(_HIGH) > 4096:
            _HIGH.clear()
        out = bytearray()
        while high > 0x7F:
            out.append((high & 0x7F) | 0x80)
            high >>= 7
        out.append(high)
        tail = _HIGH[z >> 21] = bytes(out)
    return bytes(((z & 0x7F) | 0x80, ((z >> 7) & 0x7F) | 0x80, ((z >> 14) & 0x7F) | 0x80)) + tail
# Large longs are mostly epoch-millisecond timestamps, and one event's outputs repeat the same ones.
_cached_varint = lru_cache(maxsize=1 << 14)(_varint)


def _bad(path: str, expected: str, value: Any) -> EncodeError:
    return EncodeError("encode.schema", f"{path}: expected {expected}, got {type(value).__name__}")


class SchemaNames:
    """The named types of a schema by full name, as the Avro spec resolves them (shared with the reader)."""

    def __init__(self) -> None:
        self.named: dict[str, Any] = {}       # fullname -> schema

    def fullname(self, schema: Mapping[str, Any], namespace: str) -> str:
        name = str(schema["name"])
        if "." in name:
            return name
        ns = schema.get("namespace", namespace)
        return f"{ns}.{name}" if ns else name

    def declare(self, schema: Any, namespace: str) -> None:
        """Register named types ahead of use, so references by name resolve."""
        if isinstance(schema, list):
            for branch in schema:
                self.declare(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "enum", "fixed", "error"):
                full = self.fullname(schema, namespace)
                self.named[full] = schema
                self.named.setdefault(str(schema["name"]), schema)
                ns = full.rsplit(".", 1)[0] if "." in full else ""
                for field in schema.get("fields", ()):
                    self.declare(field["type"], ns)
            elif kind in ("array", "map"):
                self.declare(schema.get("items", schema.get("values")), namespace)
            elif isinstance(kind, (dict, list)):
                self.declare(kind, namespace)



class _Generator(SchemaNames):
    def __init__(self, namespace: str) -> None:
        super().__init__()
        self.namespace = namespace
        self.functions: dict[str, list[str]] = {}
        self.records: dict[str, str] = {}     # record fullname -> its function
        self.consts: dict[str, Any] = {
            "_varint": _cached_varint, "_L": _LENGTHS, "_SMALL": _SMALL, "_bad": _bad,
            "_pack_f": struct.Struct("<f").pack, "_pack_d": struct.Struct("<d").pack, "EncodeError": EncodeError,
            "Any": Any,
        }
        self.counter = 0

    def resolve(self, schema: Any, namespace: str) -> Any:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            full = schema if "." in schema or not namespace else f"{namespace}.{schema}"
            return self.named.get(full) or self.named[schema]
        return schema

    def const(self, value: Any) -> str:
        self.counter += 1
        name = f"_c{self.counter}"
        self.consts[name] = value
        return name

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def kind(self, schema: Any) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            return schema
        kind = schema["type"]
        return str(kind) if not isinstance(kind, (dict, list)) else self.kind(kind)

    def emit(self, schema: Any, v: str, path: str, ns: str, *, lines: list[str], ind: str) -> None:
        """Lines that append the encoding of local `v` (already of any type) to `out`."""
        schema = self.resolve(schema, ns)
        if isinstance(schema, dict) and isinstance(schema["type"], (dict, list)):
            schema = schema["type"]
        kind = self.kind(schema)
        p = repr(path)
        if kind == "null":
            lines += [f"{ind}if {v} is not None: raise _bad({p}, 'null', {v})"]
        elif kind == "boolean":
            lines += [f"{ind}if {v} is True: out += b'\\x01'", f"{ind}elif {v} is False: out += b'\\x00'",
                      f"{ind}else: raise _bad({p}, 'boolean', {v})"]
        elif kind in ("int", "long"):
            lo, hi = (-(2**31), 2**31 - 1) if kind == "int" else (-(2**63), 2**63 - 1)
            lines += [f"{ind}if type({v}) is not int or not {lo} <= {v} <= {hi}: raise _bad({p}, '{kind}', {v})",
                      f"{ind}out += _varint({v})"]
        elif kind in ("float", "double"):
            pack = "_pack_f" if kind == "float" else "_pack_d"
            lines += [f"{ind}if type({v}) is float or type({v}) is int: out += {pack}({v})",
                      f"{ind}else: raise _bad({p}, '{kind}', {v})"]
        elif kind == "string":
            lines += [f"{ind}if type({v}) is not str: raise _bad({p}, 'string', {v})",
                      f"{ind}try: b = {v}.encode()",
                      f"{ind}except UnicodeEncodeError as exc: raise EncodeError('encode.unencodable', "
                      f"{p} + ': not valid text (lone surrogate?)') from exc",
                      f"{ind}n = len(b)", f"{ind}out += _L[n] if n < _SMALL else _varint(n)", f"{ind}out += b"]
        elif kind == "bytes":
            lines += [f"{ind}if type({v}) is not bytes and type({v}) is not bytearray: raise _bad({p}, 'bytes', {v})",
                      f"{ind}n = len({v})", f"{ind}out += _L[n] if n < _SMALL else _varint(n)", f"{ind}out += {v}"]
        elif kind == "enum":
            table = self.const({s: _varint(i) for i, s in enumerate(schema["symbols"])})
            lines += [f"{ind}e = {table}.get({v}) if type({v}) is str else None",
                      f"{ind}if e is None: raise EncodeError('encode.schema', {p} + ': not a symbol of the enum')",
                      f"{ind}out += e"]
        elif kind == "fixed":
            lines += [f"{ind}if type({v}) is not bytes or len({v}) != {schema['size']}: "
                      f"raise _bad({p}, 'fixed({schema['size']})', {v})", f"{ind}out += {v}"]
        elif kind == "record":
            func = self.record(schema, ns)
            lines += [f"{ind}if type({v}) is not dict: raise _bad({p}, 'record', {v})", f"{ind}{func}({v}, out)"]
        elif kind in ("array", "map"):
            item, x = self.var(), self.var()
            is_map = kind == "map"
            check = "type({v}) is not dict" if is_map else "type({v}) is not list and type({v}) is not tuple"
            lines += [f"{ind}if {check.format(v=v)}: raise _bad({p}, '{kind}', {v})",
                      f"{ind}if {v}:", f"{ind}    out += _varint(len({v}))"]
            if is_map:
                lines += [f"{ind}    for {item}, {x} in {v}.items():"]
                self.emit("string", item, path + "{}", ns, lines=lines, ind=ind + "        ")
            else:
                lines += [f"{ind}    for {x} in {v}:"]
            sub = schema["values"] if is_map else schema["items"]
            self.emit(sub, x, path + "[]", ns, lines=lines, ind=ind + "        ")
            lines += [f"{ind}out += b'\\x00'"]
        elif kind == "union":
            self.union(schema, v, path, ns, lines=lines, ind=ind)
        else:
            raise ValueError(f"unsupported Avro type {kind!r} at {path}")

    # Branch tests in fastavro's validation terms: bool is not an int, an int is a valid float.
    _TESTS: Mapping[str, str] = {
        "null": "{v} is None", "boolean": "type({v}) is bool", "int": "type({v}) is int",
        "long": "type({v}) is int", "float": "type({v}) is float or type({v}) is int",
        "double": "type({v}) is float or type({v}) is int", "string": "type({v}) is str",
        "bytes": "type({v}) is bytes or type({v}) is bytearray", "enum": "type({v}) is str",
        "fixed": "type({v}) is bytes", "array": "type({v}) is list or type({v}) is tuple",
        "map": "type({v}) is dict", "record": "type({v}) is dict",
    }

    def union(self, branches: list[Any], v: str, path: str, ns: str, *, lines: list[str], ind: str) -> None:
        first = True
        resolved_all = [self.resolve(b, ns) for b in branches]
        records = [(i, b) for i, b in enumerate(resolved_all) if self.kind(b) == "record"]
        if records:  # tuple notation names the branch outright
            lines += [f"{ind}if type({v}) is tuple:", f"{ind}    name, {v} = {v}",
                      f"{ind}    if type({v}) is not dict: raise _bad({path!r}, 'record', {v})"]
            for n, (idx, branch) in enumerate(records):
                full = self.fullname(branch, ns)
                lines += [f"{ind}    {'if' if n == 0 else 'elif'} name == {full!r}:",
                          f"{ind}        out += {_varint(idx)!r}", f"{ind}        {self.record(branch, ns)}({v}, out)"]
            lines += [f"{ind}    else: raise EncodeError('encode.schema', "
                      f"{path!r} + ': no union branch named ' + str(name))"]
            first = False
        for idx, branch in enumerate(branches):
            resolved = self.resolve(branch, ns)
            kind = self.kind(resolved)
            test = self._TESTS[kind].format(v=v)
            if kind == "int":
                test = f"{test} and {-(2**31)} <= {v} <= {2**31 - 1}"
            elif kind == "long":
                test = f"{test} and {-(2**63)} <= {v} <= {2**63 - 1}"
            elif kind == "enum":
                test = f"{test} and {v} in {tuple(resolved['symbols'])!r}"
            elif kind == "fixed":
                test = f"{test} and len({v}) == {resolved['size']}"
            lines += [f"{ind}{'if' if first else 'elif'} {test}:", f"{ind}    out += {_varint(idx)!r}"]
            if kind != "null":
                self.emit(resolved, v, path, ns, lines=lines, ind=ind + "    ")
            first = False
        lines += [f"{ind}else: raise _bad({path!r}, 'one of the union branches', {v})"]

    def record(self, schema: Mapping[str, Any], namespace: str) -> str:
        full = self.fullname(schema, namespace)
        func = "_w_" + full.replace(".", "_")
        if func in self.functions:
            return func
        self.named[full] = schema
        self.named.setdefault(str(schema["name"]), schema)
        self.functions[func] = []  # placeholder: recursive references stop here
        self.records[full] = func
        ns = full.rsplit(".", 1)[0] if "." in full else ""
        lines = [f"def {func}(r: Any, out: bytearray) -> None:"]
        for field in schema["fields"]:
            name = field["name"]
            v = self.var()
            if "default" in field:
                default = self.const(field["default"])
                lines += [f"    {v} = r.get({name!r}, {default})"]
            else:
                lines += [f"    try: {v} = r[{name!r}]",
                          f"    except KeyError: raise EncodeError('encode.schema', "
                          f"{name!r} + ': required field missing') from None"]
            self.emit(field["type"], v, name, ns, lines=lines, ind="    ")
        self.functions[func] = lines
        return func


def writer_source(schema: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(source, record fullname -> its function, the names the source uses) of `compile_writers`' writers."""
    gen = _Generator(str(schema.get("namespace", "")))
    gen.declare(dict(schema), gen.namespace)
    gen.record(schema, gen.namespace)
    return "\n".join(line for lines in gen.functions.values() for line in lines), gen.records, gen.consts


def writer_key(schema: Mapping[str, Any]) -> str:
    """What names the writers built ahead of time for `schema` (eventrouter/dev/native.py)."""
    return "w" + hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()[:20]


def module_source(schema: Mapping[str, Any]) -> str:
    """A module of the writers, for `eventrouter.dev.native` to compile as `schemas/_aot_<writer_key>.py`. Its
    constants (enum tables, field defaults) come from the schema, written as literals."""
    source, records, consts = writer_source(schema)
    shared = ("_varint", "_L", "_SMALL", "_bad", "_pack_f", "_pack_d", "EncodeError", "Any")
    literals = [f"{name}: {_literal_type(value)} = {value!r}" for name, value in consts.items() if name not in shared]
    return "\n".join([
        '"""Avro writers, generated by schemas/compiled.py."""', "", "from __future__ import annotations", "",
        "import struct", "from typing import Any", "",
        "from schemas.compiled import _LENGTHS as _L", "from schemas.compiled import _SMALL, _bad",
        "from schemas.compiled import _cached_varint as _varint", "from schemas.errors import EncodeError", "",
        '_pack_f = struct.Struct("<f").pack', '_pack_d = struct.Struct("<d").pack', *literals, "", "",
        source.replace("\ndef ", "\n\n\ndef "), "", "",
        "WRITERS = {" + ", ".join(f"{full!r}: {func}" for full, func in records.items()) + "}", ""])


def _literal_type(value: Any) -> str:
    """An enum's table of symbols is a dict of bytes; a field default any JSON value."""
    if isinstance(value, dict) and value and all(isinstance(v, bytes) for v in value.values()):
        return "dict[str, bytes]"
    return "Any"


def compile_writers(schema: Mapping[str, Any]) -> dict[str, Callable[[Mapping[str, Any], bytearray], None]]:
    """A writer for `schema` and for every record type it names, by full name: `write(record, out)`
    appends the Avro binary of `record` (a dict of that record type) to `out`. Compiled ahead of time for
    the schemas the native build knows (eventrouter/dev/native.py), exec'd for any other."""
    writers: dict[str, Callable[[Mapping[str, Any], bytearray], None]] | None = generated(writer_key(schema), "WRITERS")
    if writers is not None:
        return writers
    source, records, consts = writer_source(schema)
    scope = dict(consts)
    exec(compile(source, f"<avro writer {next(iter(records), '')}>", "exec"), scope)
    return {full: scope[func] for full, func in records.items()}


def compile_writer(schema: Mapping[str, Any]) -> Callable[[Mapping[str, Any], bytearray], None]:
    """`write(record, out)` appends the Avro binary of `record` (a dict for this record schema) to `out`."""
    gen = _Generator(str(schema.get("namespace", "")))
    return compile_writers(schema)[gen.fullname(schema, gen.namespace)]
