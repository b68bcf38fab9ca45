"""The playbook's model: what an integration does to an event (filters, sections of mappings and
enrichments, transforms), parsed from YAML by pydantic; and the starter kits shipped with it."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Annotated, Any, Final, Literal

import regex
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.playbook.expressions import ExpressionError, compile_expression

CALL_TYPES: Final = ("track", "identify", "page", "screen", "group", "alias")
TRANSFORMS: Final = ("direct", "join", "lowercase", "uppercase", "trim", "pluck", "replace", "split", "substring",
                     "to_bool", "to_float", "to_int", "to_string", "truncate_float", "hash", "timestamp")
# the JSON type a transform yields, so that a default of another type is caught at load time
_OUTPUT: Final[Mapping[str, tuple[type, ...]]] = {
    "lowercase": (str,), "uppercase": (str,), "trim": (str,), "replace": (str,), "substring": (str,),
    "to_string": (str,), "hash": (str,), "join": (str,), "to_bool": (bool,), "to_float": (int, float),
    "to_int": (int,), "truncate_float": (int, float), "split": (list,), "pluck": (list,),
}
_OPTIONS: Final[Mapping[str, frozenset[str]]] = {
    "join": frozenset({"separator"}), "split": frozenset({"separator"}), "pluck": frozenset({"pluck"}),
    "replace": frozenset({"pattern", "replacement", "regex"}), "substring": frozenset({"start", "end"}),
    "to_int": frozenset({"rounding"}), "truncate_float": frozenset({"digits"}), "hash": frozenset({"normalize"}),
    "timestamp": frozenset({"format"}),
}
_TIMESTAMP_FORMATS: Final = ("unix_ms", "unix_s", "unix_micros", "iso8601", "date")
Path_ = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_$][A-Za-z0-9_$.\[\]-]*$", max_length=300)]


class StrictModel(BaseModel):
    """Unknown keys are errors; values are frozen."""
    # a field's docstring is its description: docs/configuration.md is made from them (eventrouter/reference.py)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)


class Mapping_(StrictModel):
    """One output value: read `from` (a path into the event, or several for join), transform, write `to`."""

    from_: Path_ | list[Path_] | None = Field(None, alias="from")
    """A path into the event (`properties.products[0].price`), or a list of paths for `transform: join`.
    Give exactly one of `from` and `expr`."""
    to: Path_
    """The output path the value is written to; an object written onto an object merges."""
    transform: str = "direct"
    """One of direct, join, lowercase, uppercase, trim, pluck, replace, split, substring, to_bool,
    to_float, to_int, to_string, truncate_float, hash, timestamp."""
    default: Any = None
    """Written when the value is null; must be of the type the transform yields."""
    expr: str | None = None
    """An expression that computes the value, instead of `from` (docs/playbooks.md)."""
    separator: str | None = None
    """join, split: the separator (default `,`)."""
    pluck: list[str] | dict[str, str] | None = None
    """pluck (implied when given): the keys to keep from each object, or a map old key -> new key."""
    pattern: str | None = None
    """replace: the text to replace, or a regular expression with `regex: true`."""
    replacement: str | None = None
    """replace: what replaces it (default: nothing)."""
    regex: bool | None = None
    """replace: `pattern` is a regular expression (at most 0.1 s per value)."""
    start: int | None = None
    """substring: the first character kept, from 0 (default 0)."""
    end: int | None = None
    """substring: the character after the last one kept (default: the end)."""
    rounding: Literal["round", "truncate"] | None = None
    """to_int: round half up (the default) or truncate."""
    digits: Annotated[int, Field(ge=0, le=12)] | None = None
    """truncate_float: digits kept after the point (default 2)."""
    normalize: Literal["email", "phone", "text", "none"] | None = None
    """hash: how the value is normalised before SHA-256 (default text: trimmed, lowercased)."""
    format: str | None = None
    """timestamp: unix_ms, unix_s, unix_micros, iso8601 (the default), date, or a strftime pattern."""

    @model_validator(mode="before")
    @classmethod
    def _implied_transform(cls, data: Any) -> Any:
        if isinstance(data, dict) and "pluck" in data and "transform" not in data:
            return {**data, "transform": "pluck"}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Mapping_:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; known: {', '.join(TRANSFORMS)}")
        if (self.from_ is None) == (self.expr is None):
            raise ValueError("give exactly one of `from` (a path) and `expr` (an expression)")
        if self.expr is not None:
            try:
                compile_expression(self.expr)
            except ExpressionError as exc:
                raise ValueError(f"expr: {exc.message}") from None
        if isinstance(self.from_, list) and self.transform != "join":
            raise ValueError("several `from` paths need transform: join")
        given = {name for name in ("separator", "pluck", "pattern", "replacement", "regex", "start", "end",
                                   "rounding", "digits", "normalize", "format") if getattr(self, name) is not None}
        stray = given - _OPTIONS.get(self.transform, frozenset())
        if stray:
            raise ValueError(f"transform {self.transform} takes no {', '.join(sorted(stray))}")
        if self.transform == "pluck" and not self.pluck:
            raise ValueError("transform pluck needs `pluck`: the keys to keep (a list, or a map old -> new)")
        if self.transform == "replace" and self.pattern is None:
            raise ValueError("transform replace needs `pattern`")
        if self.transform == "replace" and self.regex:
            try:
                regex.compile(self.pattern or "")  # the engine the transform runs (schemas/playbook/transforms.py)
            except regex.error as exc:
                raise ValueError(f"pattern: not a regular expression: {exc}") from None
        if self.transform == "timestamp" and self.format is not None and self.format not in _TIMESTAMP_FORMATS \
                and "%" not in self.format:
            raise ValueError(f"format must be one of {', '.join(_TIMESTAMP_FORMATS)} or a strftime pattern")
        kinds = _OUTPUT.get(self.transform)
        if self.default is not None and kinds and not (isinstance(self.default, kinds)
                                                       and not (bool not in kinds and isinstance(self.default, bool))):
            raise ValueError(f"default {self.default!r} is not of the type transform {self.transform} yields "
                             f"({' or '.join(k.__name__ for k in kinds)})")
        return self


class Section(StrictModel):
    """What a playbook does to an event: map, enrich, compute, rename, or drop it."""

    mappings: list[Mapping_] = []
    """Output values, each read from the event or computed, then transformed (Mapping keys below)."""
    enrich: dict[Path_, Any] = {}
    """Fixed values by output path."""
    rename: str | None = None
    """The event name to send instead of the event's own."""
    drop: bool = False
    """true: the integration does not receive these events (counted as `<section>.drop`)."""


class Rule(StrictModel):
    """Events this rule matches: by call type, by event name (glob patterns), by a condition."""

    type: list[Literal["track", "identify", "page", "screen", "group", "alias"]] | None = None
    """Call types the rule matches."""
    event: list[str] | None = None
    """Event names the rule matches; `*` is a wildcard (`"Debug *"`)."""
    when: str | None = None
    """An expression that must be true (docs/playbooks.md). The criteria of one rule must all hold."""

    @field_validator("when")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_expression(value)
            except ExpressionError as exc:
                raise ValueError(exc.message) from None
        return value


class Filter(StrictModel):
    allow: Rule | None = None
    """Only events this rule matches are sent (the others counted as `filter.allow`)."""
    deny: Rule | None = None
    """Events this rule matches are not sent (counted as `filter.deny`)."""


class Playbook(StrictModel):
    """Sections as MetaRouter has them: global (every event), events (by event name; other calls by their
    type: `identify`, `page`...), default (events without a section of their own)."""

    filter: Filter = Filter()
    """Which events the integration receives: `allow` and `deny` rules."""
    keep_event: bool = False
    """true: start from the whole Segment event instead of an empty payload."""
    global_: Section = Field(Section(), alias="global")
    """Applied to every event."""
    events: dict[str, Section] = {}
    """Sections by track event name; other calls by their type (`identify`, `page`...)."""
    default: Section = Section()
    """Applied to events without a section of their own in `events`."""
    function: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    """A code hook `package.module:name`, called with `(event, payload)`; only modules listed in
    EVENTROUTER_CODE_MODULES may be named."""


def starter_names() -> list[str]:
    folder = resources.files("schemas.playbook").joinpath("starters")
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def starter_text(name: str) -> str:
    return resources.files("schemas.playbook").joinpath(f"starters/{name}.yaml").read_text()
