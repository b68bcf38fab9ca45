"""What one integration receives from one event: consent, the event's `integrations` map, then the
integration's playbook (filters; global, event-specific and default sections; mappings, enrichments,
rename, drop; a Python function where the config allows code). Pure: plain dicts in, `Outcome` out.

Every event an integration does not receive is filtered by a named rule, counted per rule:
`integrations_map`, `consent.<category>`, `filter.allow`, `filter.deny`, `events["<name>"].drop`,
`default.drop`, `global.drop`, `function`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from typing import Any, Final, NamedTuple

import orjson

from schemas.config import Integration, Mapping_, Playbook, Rule, Section
from schemas.errors import FinalError
from schemas.expressions import ExpressionError, compile_expression, inline_source
from streams.transforms import (
    compile_getter,
    compile_setter,
    compile_transform,
    get_path,
    is_identity,
    parse_path,
)

# Names Segment users write in an event's `integrations` map for each kind, besides the integration's own name.
KIND_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "ga4": ("ga4", "google analytics 4", "google analytics"),
    "meta_capi": ("meta_capi", "facebook conversions api", "meta conversions api", "facebook pixel"),
    "amplitude": ("amplitude",),
    "mixpanel": ("mixpanel",),
    "braze": ("braze",),
    "webhook": ("webhook", "webhooks"),
}


class PlaybookError(FinalError):
    """A playbook failed on an event (an expression or a function): dead-letter it with this reason."""


class Outcome(NamedTuple):
    """A vendor-shaped `payload` with its `event_name`, or the rule that filtered the event. (A
    NamedTuple: one is made per event and integration, and a frozen dataclass costs far more to build.)"""

    payload: dict[str, Any] | None = None
    event_name: str | None = None
    filtered_by: str | None = None


def event_key(event: Mapping[str, Any]) -> str:
    """The name playbook sections and event filters match: a track's event name, else the call type."""
    call = event.get("type")
    if call == "track":
        return str(event.get("event") or "")
    return str(call)


MappingFn = Callable[[Mapping[str, Any], dict[str, Any], set[int]], None]


def _compile_mapping(mapping: Mapping_) -> MappingFn:
    """One mapping as one closure: read (a path, several for join, or an expression), transform, fall
    back to the default, write. The usual mapping (one path, no transform, no default) is two dict
    operations; this runs a dozen times per event and integration."""
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


SectionFn = Callable[[Mapping[str, Any], dict[str, Any], set[int]], None]


def _compile_section(section: Section, where: str) -> SectionFn:
    """A section's mappings and enrichments as one generated function of straight-line code, in their
    order: each mapping reads (a key path inline, an expression or a getter), transforms, falls back to
    its default and writes (a path of keys inline, copying containers it does not own, an object onto an
    object merging), as the closures of `_compile_mapping` and `set_path` do; a `join` of several paths
    or a target with list indexes calls those. Names and values from the config are constants of the
    function's namespace, never part of its source text.

    Each event path is read once per call into a local (`context.traits` for a dozen mappings): a
    section never changes the event. Each payload object written under (`user_data` for a dozen) is
    found once into a local too, and forgotten when a later write replaces it or one of its parents."""
    consts: dict[str, Any] = {"_dict": dict, "_get_path": get_path, "_ExpressionError": ExpressionError}
    head = ["def section(event, payload, owned):", "    if type(event) is not _dict:", "        event = _dict(event)"]
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
            up = read(keys[:-1]) if len(keys) > 1 else "event"
            name = f"r{len(reads)}"
            if len(keys) == 1:
                lines.append(f"    {name} = event.get({const(keys[0])})")
            else:
                lines.append(f"    {name} = {up}.get({const(keys[-1])}) if type({up}) is _dict else "
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
                         f"{indent}    if type(child) is not _dict or id(child) not in owned:",
                         f"{indent}        child = _dict(child) if type(child) is _dict else {{}}",
                         f"{indent}        owned.add(id(child))",
                         f"{indent}        node[{k}] = child",
                         f"{indent}    node = child"]
            local = nodes.get(parent)
            if local is None:
                local = nodes[parent] = f"n{len(nodes)}"
                head.append(f"    {local} = None")
            out = [f"{indent}node = {local}", f"{indent}if node is None:", *walk, f"{indent}    {local} = node"]
        k = const(keys[-1])
        return [*out, f"{indent}if type({value}) is _dict and type(node.get({k})) is _dict:",
                f"{indent}    {value} = {{**{value}, **node[{k}]}}", f"{indent}node[{k}] = {value}",
                *forget(keys, indent)]

    for mapping in section.mappings:
        target = parse_path(mapping.to)
        if isinstance(mapping.from_, list) or not all(isinstance(k, str) for k in target):
            lines.append(f"    {const(_compile_mapping(mapping))}(event, payload, owned)")
            lines.extend(forget((), "    "))  # it may have written anywhere
            continue
        inline = None
        if mapping.expr is not None and inline_source(mapping.expr, repr) is not None:
            inline = inline_source(mapping.expr, const, read)
        if inline is not None:
            lines += ["    try:", f"        v = {inline}", "    except (TypeError, ValueError, AttributeError) as exc:",
                      f"        raise _ExpressionError(f'{{{const(mapping.expr)}}}: {{exc}}') from None"]
        elif mapping.expr is not None:
            lines.append(f"    v = {const(compile_expression(mapping.expr))}(event, payload)")
        else:
            assert isinstance(mapping.from_, str)
            source = parse_path(mapping.from_)
            if all(isinstance(k, str) for k in source):  # keys into plain dicts inline; anything else: a getter
                lines.append(f"    v = {read(tuple(str(k) for k in source))}")
            else:
                lines.append(f"    v = {const(compile_getter(source))}(event)")
        transform = compile_transform(mapping)
        if not is_identity(transform):  # every transform maps None to None (tests/unit/streams/test_transforms.py)
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
    namespace = dict(consts)
    exec(compile("\n".join(head + lines), f"<playbook section {where}>", "exec"), namespace)  # our own source
    function: SectionFn = namespace["section"]
    return function


class _Section:
    def __init__(self, section: Section, where: str) -> None:
        self.where = where
        self.apply = _compile_section(section, where)
        self.rename = section.rename
        self.drop = section.drop


class _Rule:
    def __init__(self, rule: Rule) -> None:
        self.types = frozenset(rule.type) if rule.type is not None else None
        self.patterns = list(rule.event) if rule.event is not None else None
        self.when = compile_expression(rule.when) if rule.when is not None else None

    def matches(self, event: Mapping[str, Any], key: str) -> bool:
        """Every criterion given holds (type, then event name patterns, then the condition)."""
        if self.types is not None and event.get("type") not in self.types:
            return False
        if self.patterns is not None and not any(fnmatchcase(key, p) for p in self.patterns):
            return False
        return self.when is None or bool(self.when(event, {}))


class CompiledPlaybook:
    """A playbook made ready to run: expressions compiled, paths parsed, functions imported."""

    def __init__(self, playbook: Playbook, *, allow_code: bool = False) -> None:
        self.allow = _Rule(playbook.filter.allow) if playbook.filter.allow else None
        self.deny = _Rule(playbook.filter.deny) if playbook.filter.deny else None
        self.keep_event = playbook.keep_event
        self.global_ = _Section(playbook.global_, "global")
        self.events = {name: _Section(s, f'events["{name}"]') for name, s in playbook.events.items()}
        self.default = _Section(playbook.default, "default")
        self.function: Callable[[Mapping[str, Any], dict[str, Any]], dict[str, Any] | None] | None = None
        if playbook.function:
            if not allow_code:
                raise PlaybookError("playbook.function", "code in playbooks is off (settings.allow_code)")
            module, _, name = playbook.function.partition(":")
            self.function = getattr(importlib.import_module(module), name)

    def apply(self, event: Mapping[str, Any]) -> Outcome:
        key = event_key(event)
        try:
            if self.allow is not None and not self.allow.matches(event, key):
                return _ALLOW
            if self.deny is not None and self.deny.matches(event, key):
                return _DENY
            section = self.events.get(key, self.default)
            if self.global_.drop:
                return Outcome(None, None, f"{self.global_.where}.drop")
            if section.drop:
                return Outcome(None, None, f"{section.where}.drop")
            if self.keep_event:
                payload: dict[str, Any] = orjson.loads(orjson.dumps(event))
                owned = _ids(payload)
            else:
                payload = {}
                owned = {id(payload)}
            self.global_.apply(event, payload, owned)
            section.apply(event, payload, owned)
        except ExpressionError as exc:
            raise PlaybookError("playbook.expression", exc.message) from None
        name = section.rename or self.global_.rename or key
        if self.function is not None:
            try:
                result = self.function(event, payload)
            except Exception as exc:  # noqa: BLE001 - user code: whatever it raises is a playbook error
                raise PlaybookError("playbook.function", f"{type(exc).__name__}: {exc}"[:300]) from None
            if result is None:
                return Outcome(None, None, "function")
            payload = result
        return _new(Outcome, (payload, name, None))  # Outcome(payload, name) without NamedTuple's __new__


_new = tuple.__new__
_ALLOW: Final = Outcome(None, None, "filter.allow")
_DENY: Final = Outcome(None, None, "filter.deny")
_MAP: Final = Outcome(None, None, "integrations_map")


def _ids(value: Any) -> set[int]:
    """Ids of every container in `value` (a fresh copy this payload owns)."""
    out = {id(value)}
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, dict | list):
            out |= _ids(item)
    return out


class Route:
    """One integration's decision for each event: does it receive it, and in what shape."""

    def __init__(self, integration: Integration, *, allow_code: bool = False) -> None:
        self.integration = integration
        self.name = integration.name
        self.playbook = CompiledPlaybook(integration.playbook, allow_code=allow_code)
        self._names = frozenset((integration.name.lower(), *KIND_ALIASES[integration.kind]))
        self._category = integration.consent.lower() if integration.consent else None

    def decide(self, event: Mapping[str, Any]) -> Outcome:
        switches = event.get("integrations")
        if switches and self._blocked_by_map(switches):
            return _MAP
        if self._category is not None and not self._consented(event.get("context")):
            return Outcome(None, None, f"consent.{self.integration.consent}")
        return self.playbook.apply(event)

    def _blocked_by_map(self, switches: Any) -> bool:
        """Segment's rule: an entry for this destination decides; otherwise "All" (default on)."""
        if not switches or not (type(switches) is dict or isinstance(switches, Mapping)):
            return False
        everything = True
        for key, value in switches.items():
            name = str(key).lower()
            if name in self._names:
                return value is False
            if name == "all":
                everything = value is not False
        return not everything

    def _consented(self, context: Any) -> bool:
        """False when the event opts out of this integration's category; an event without preferences is
        consented unless the integration says consent_required."""
        consent = context.get("consent") if type(context) is dict or isinstance(context, Mapping) else None
        if not (type(consent) is dict or isinstance(consent, Mapping)):
            return not self.integration.consent_required
        opt_out = consent.get("optOut")
        if opt_out is True or (isinstance(opt_out, list) and any(str(c).lower() == self._category for c in opt_out)):
            return False
        preferences = consent.get("categoryPreferences")
        if not (type(preferences) is dict or isinstance(preferences, Mapping)):
            return not self.integration.consent_required
        for category, allowed in preferences.items():
            if str(category).lower() == self._category:
                return allowed is True
        return not self.integration.consent_required
