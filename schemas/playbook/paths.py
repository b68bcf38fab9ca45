"""Paths into events: dotted keys with optional list indexes, `properties.products[0].price`. Reading a
missing path gives None; writing one creates the objects (and pads lists) on the way. Pure."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any, Final

from schemas.playbook.budget import MAX_ITEMS, BudgetError

Segment = str | int
_TOKEN: Final = re.compile(r"([^.\[\]]+)|\[(-?\d+)\]")


@lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[Segment, ...]:
    return tuple(int(index) if index else key for key, index in _TOKEN.findall(path))


def get_path(value: Any, path: str | tuple[Segment, ...]) -> Any:
    for part in parse_path(path) if isinstance(path, str) else path:
        if isinstance(part, int):
            if not isinstance(value, list) or not -len(value) <= part < len(value):
                return None
            value = value[part]
        elif type(value) is dict or isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
    return value


def compile_getter(path: str | tuple[Segment, ...]) -> Callable[[Any], Any]:
    """`get_path` for one path, specialised: keys into plain dicts are plain lookups (the router runs a
    dozen of these per event and integration); anything else takes the general walk."""
    parts = parse_path(path) if isinstance(path, str) else path
    if not all(isinstance(p, str) for p in parts):
        return lambda v: get_path(v, parts)
    if len(parts) == 1:
        key = parts[0]
        return lambda v: v.get(key) if type(v) is dict else get_path(v, parts)
    keys = parts

    def get_keys(value: Any) -> Any:
        for index, key in enumerate(keys):
            if type(value) is dict:
                value = value.get(key)
            elif value is None:
                return None
            else:
                return get_path(value, keys[index:])
        return value
    return get_keys


Setter = Callable[[dict[str, Any], Any, set[int]], None]


def compile_setter(path: str | tuple[Segment, ...]) -> Setter:
    """`set_path` for one path; a single key is a plain store (with the object-onto-object merge)."""
    parts = parse_path(path) if isinstance(path, str) else path
    if len(parts) == 1 and isinstance(parts[0], str):
        key = parts[0]

        def put(target: dict[str, Any], value: Any, owned: set[int]) -> None:
            if type(value) is dict:
                current = target.get(key)
                if type(current) is dict:
                    value = {**value, **current}
            target[key] = value
        return put
    return lambda target, value, owned: set_path(target, parts, value, owned)


def set_path(target: dict[str, Any], path: str | tuple[Segment, ...], value: Any, owned: set[int]) -> None:
    """Write `value` at `path`. Containers on the way that are not in `owned` (ids of those this payload
    made) are copied first, so a payload that took a dict from the event never changes the event."""
    parts = parse_path(path) if isinstance(path, str) else path
    node: Any = target
    for part, following in itertools.pairwise(parts):
        child = _child(node, part)
        wanted = list if isinstance(following, int) else dict
        if type(child) is not wanted:
            child = wanted()
        elif id(child) not in owned:
            child = wanted(child)
        else:
            node = child
            continue
        owned.add(id(child))
        _put(node, part, child, merge=False)
        node = child
    _put(node, parts[-1], value)


def _child(node: Any, part: Segment) -> Any:
    if isinstance(part, int):
        return node[part] if -len(node) <= part < len(node) else None
    return node.get(part)


def _put(node: Any, part: Segment, value: Any, *, merge: bool = True) -> None:
    if isinstance(part, int):
        if part >= MAX_ITEMS:  # `to: x[999999999]` would pad the list with a billion nulls
            raise BudgetError(f"list index {part} is over the limit of {MAX_ITEMS} items")
        while len(node) <= part:
            node.append(None)
    elif merge and isinstance(value, dict) and isinstance(node.get(part), dict):
        value = {**value, **node[part]}  # an object onto an object merges; the keys already set stay
    node[part] = value
