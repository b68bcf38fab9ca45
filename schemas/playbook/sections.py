"""A playbook section (its mappings and enrichments, in order) as one function of straight-line code.

The code is generated as the source of a module whose `make(ns)` returns the section's function with the
section's names and values (`ns`, never part of the text) bound. The text depends only on the section's
shape, so `eventrouter.dev.native` compiles the starter kits' sections with mypyc ahead of time, as it does
the Avro readers, keyed by the text's hash: a section the build has runs compiled (the Meta starter's
global section: 2.4 -> 1.4 us an event), any other (a customised playbook) is exec'd, the same text.
Pure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from schemas.native import generated
from schemas.playbook.expressions import ExpressionError, compile_expression, inline_source
from schemas.playbook.model import Mapping_, Playbook, Section, starter_names, starter_text
from schemas.playbook.paths import compile_getter, compile_setter, get_path, parse_path
from schemas.playbook.transforms import compile_transform, is_identity

MappingFn = Callable[[Mapping[str, Any], dict[str, Any], set[int]], None]
SectionFn = Callable[[Mapping[str, Any], dict[str, Any], set[int]], None]


def compile_mapping(mapping: Mapping_) -> MappingFn:
    """One mapping as one closure: read (a path, several for join, or an expression), transform, fall
    back to the default, write. The usual mapping (one path, no transform, no default) is two dict
    operations; a section's code calls this for a `join` of several paths or a target with list indexes."""
    put = compile_setter(mapping.to)
    compiled = compile_transform(mapping)
    transform = None if is_identity(compiled) else compiled
    default = mapping.default
    read: Callable[..., Any]
    if mapping.expr is not None:
        read = compile_expression(mapping.expr)
    else:
        sources = mapping.from_ if isinstance(mapping.from_, list) else [mapping.from_] if mapping.from_ else []
        getters = [compile_getter(s) for s in sources]
        if len(getters) == 1:
            get = getters[0]
            if transform is None and default is None:
                def direct(event: Mapping[str, Any], payload: dict[str, Any], owned: set[int]) -> None:
                    value = get(event)
                    if value is not None:
                        put(payload, value, owned)
                return direct
            read = lambda event, payload: get(event)  # noqa: E731
        else:
            read = lambda event, payload: [v for v in (g(event) for g in getters) if v is not None] or None  # noqa: E731

    def run(event: Mapping[str, Any], payload: dict[str, Any], owned: set[int]) -> None:
        value = read(event, payload)
        if transform is not None:
            value = transform(value)
        if value is None:
            value = default
            if value is None:
                return
        put(payload, value, owned)
    return run


def compile_section(section: Section, where: str) -> SectionFn:
    """The section's function: compiled ahead of time when the native build has its text, else exec'd."""
    source, consts = section_module(section)
    make = built(source)
    if make is None:
        namespace: dict[str, Any] = {}
        exec(compile(source, f"<playbook section {where}>", "exec"), namespace)  # our own source
        make = namespace["make"]
    function: SectionFn = make(consts)
    return function


def section_key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:20]


def built(source: str) -> Callable[[dict[str, Any]], SectionFn] | None:
    """`make` of the module the native build compiled from this very text, or None."""
    make: Callable[[dict[str, Any]], SectionFn] | None = generated(section_key(source), "make", "schemas.playbook")
    return make


def sections_of(playbook: Playbook) -> tuple[Section, ...]:
    return (playbook.global_, *playbook.events.values(), playbook.default)


def starter_sections() -> list[Section]:
    """Every section of every starter kit as shipped: what the native build compiles ahead of time."""
    import yaml

    return [section for name in starter_names()
            for section in sections_of(Playbook.model_validate(yaml.safe_load(starter_text(name))))]


def section_module(section: Section) -> tuple[str, dict[str, Any]]:
    """The module's source and the `ns` its `make` binds.

    Each mapping reads (a key path inline, an expression or a getter), transforms, falls back to its
    default and writes (a path of keys inline, copying containers it does not own, an object onto an
    object merging), as `compile_mapping` and `set_path` do; a `join` of several paths or a target with
    list indexes calls those. Each event path is read once per call into a local (`context.traits` for a
    dozen mappings): a section never changes the event. Each payload object written under (`user_data`
    for a dozen) is found once into a local too, and forgotten when a later write replaces it or one of
    its parents. Typed where mypyc gains by it (the event is a dict)."""
    consts: dict[str, Any] = {"_get_path": get_path, "_ExpressionError": ExpressionError}
    head = ["def section(event: Any, payload: dict[str, Any], owned: set[int]) -> None:",
            "    ev: dict[str, Any] = event if type(event) is dict else dict(event)",
            "    node: Any = None", "    child: Any = None", "    v: Any = None", "    e: Any = None"]
    lines: list[str] = []
    reads: dict[tuple[str, ...], str] = {}  # event path -> the local read into
    nodes: dict[tuple[str, ...], str] = {}  # payload path -> the local holding that owned object, or None

    def const(value: Any) -> str:
        name = f"c{len(consts)}"
        consts[name] = value
        return name

    def read(keys: tuple[str, ...]) -> str:
        name = reads.get(keys)
        if name is None:
            up = read(keys[:-1]) if len(keys) > 1 else "ev"
            name = f"r{len(reads)}"
            if len(keys) == 1:
                lines.append(f"    {name} = ev.get({const(keys[0])})")
            else:
                lines.append(f"    {name} = {up}.get({const(keys[-1])}) if type({up}) is dict else "
                             f"None if {up} is None else _get_path({up}, {const(keys[-1:])})")
            reads[keys] = name
        return name

    def forget(under: tuple[str, ...], indent: str) -> list[str]:
        """Locals of payload objects at or below `under`: a write there replaced them."""
        return [f"{indent}{name} = None" for path, name in nodes.items() if path[:len(under)] == under]

    def write(keys: tuple[str, ...], value: str, indent: str) -> list[str]:
        out = [f"{indent}node = payload"]
        parent = keys[:-1]
        if parent:
            walk = [f"{indent}    node = payload"]
            for key in parent:
                k = const(key)
                walk += [f"{indent}    child = node.get({k})",
                         f"{indent}    if type(child) is not dict or id(child) not in owned:",
                         f"{indent}        child = dict(child) if type(child) is dict else {{}}",
                         f"{indent}        owned.add(id(child))",
                         f"{indent}        node[{k}] = child",
                         f"{indent}    node = child"]
            local = nodes.get(parent)
            if local is None:
                local = nodes[parent] = f"n{len(nodes)}"
                head.append(f"    {local}: Any = None")
            out = [f"{indent}node = {local}", f"{indent}if node is None:", *walk, f"{indent}    {local} = node"]
        k = const(keys[-1])
        return [*out, f"{indent}if type({value}) is dict and type(node.get({k})) is dict:",
                f"{indent}    {value} = {{**{value}, **node[{k}]}}", f"{indent}node[{k}] = {value}",
                *forget(keys, indent)]

    for mapping in section.mappings:
        target = parse_path(mapping.to)
        if isinstance(mapping.from_, list) or not all(isinstance(k, str) for k in target):
            lines.append(f"    {const(compile_mapping(mapping))}(ev, payload, owned)")
            lines.extend(forget((), "    "))  # it may have written anywhere
            continue
        inline = None
        if mapping.expr is not None and inline_source(mapping.expr, repr) is not None:
            inline = inline_source(mapping.expr, const, read)
        if inline is not None:
            lines += ["    try:", f"        v = {inline}", "    except (TypeError, ValueError, AttributeError) as exc:",
                      f"        raise _ExpressionError(f'{{{const(mapping.expr)}}}: {{exc}}') from None"]
        elif mapping.expr is not None:
            lines.append(f"    v = {const(compile_expression(mapping.expr))}(ev, payload)")
        else:
            assert isinstance(mapping.from_, str)
            keys = parse_path(mapping.from_)
            if all(isinstance(k, str) for k in keys):  # keys into plain dicts inline; anything else: a getter
                lines.append(f"    v = {read(tuple(str(k) for k in keys))}")
            else:
                lines.append(f"    v = {const(compile_getter(keys))}(ev)")
        transform = compile_transform(mapping)
        if not is_identity(transform):  # every transform maps None to None (test_transforms.py)
            lines.append(f"    if v is not None:\n        v = {const(transform)}(v)")
        if mapping.default is not None:
            lines.append(f"    if v is None:\n        v = {const(mapping.default)}")
        lines.append("    if v is not None:")
        lines.extend(write(tuple(str(k) for k in target), "v", "        "))
    for path, value in section.enrich.items():
        target = parse_path(path)
        if all(isinstance(k, str) for k in target):
            lines.append(f"    e = {const(value)}")
            lines.extend(write(tuple(str(k) for k in target), "e", "    "))
        else:
            lines.append(f"    {const(compile_setter(path))}(payload, {const(value)}, owned)")
            lines.extend(forget((), "    "))
    lines.append("    return None")
    body = "\n".join("    " + line.replace("\n", "\n    ") for line in head + lines)
    temps: dict[str, str] = {}  # the expressions' temporaries, numbered per section: the same text each time
    body = re.sub(r"\b_k\d+\b", lambda m: temps.setdefault(m.group(0), f"_k{len(temps)}"), body)
    source = "\n".join([
        '"""A playbook section, generated by schemas/playbook/sections.py."""', "", "from typing import Any", "", "",
        "def make(ns: dict[str, Any]) -> Any:",
        *(f"    {name} = ns[{name!r}]" for name in consts), body, "    return section", ""])
    return source, consts
