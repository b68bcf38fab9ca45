"""The configuration as code: pipelines, integrations and their playbooks, in one YAML file.

`load_config(path)` parses and checks a file and returns a frozen `Config`, or raises
ConfigurationError listing every problem at once, each with its path:

    integrations[1].playbook.events["Order Completed"].mappings[0]: unknown transform 'hsah'

Unknown keys are errors. Secrets are `${ENV_VAR}` references, kept as references (never resolved
here, never published); schemas/secrets.py `resolve_secrets()` reads them from the environment where
they are used, and `masked()` shows them as `***`. A playbook is inline, a starter kit (`starter:ga4`), or
a YAML file (`file:playbooks/crm.yaml`, relative to the config file).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from schemas.delivery import Delivery
from schemas.errors import ConfigurationError
from schemas.expressions import ExpressionError, compile_expression
from schemas.secrets import SECRET_REFERENCE, looks_secret, masked

KINDS: Final = ("ga4", "meta_capi", "amplitude", "mixpanel", "braze", "webhook")
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
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

Name = Annotated[str, StringConstraints(pattern=_NAME)]
Path_ = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_$][A-Za-z0-9_$.\[\]-]*$", max_length=300)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Mapping_(_Model):
    """One output value: read `from` (a path into the event, or several for join), transform, write `to`."""

    from_: Path_ | list[Path_] | None = Field(None, alias="from")
    to: Path_
    transform: str = "direct"
    default: Any = None
    expr: str | None = None
    separator: str | None = None
    pluck: list[str] | dict[str, str] | None = None
    pattern: str | None = None
    replacement: str | None = None
    regex: bool | None = None
    start: int | None = None
    end: int | None = None
    rounding: Literal["round", "truncate"] | None = None
    digits: Annotated[int, Field(ge=0, le=12)] | None = None
    normalize: Literal["email", "phone", "text", "none"] | None = None
    format: str | None = None

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
                re.compile(self.pattern or "")
            except re.error as exc:
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


class Section(_Model):
    """What a playbook does to an event: map, enrich, compute, rename, or drop it."""

    mappings: list[Mapping_] = []
    enrich: dict[Path_, Any] = {}
    rename: str | None = None
    drop: bool = False


class Rule(_Model):
    """Events this rule matches: by call type, by event name (glob patterns), by a condition."""

    type: list[Literal["track", "identify", "page", "screen", "group", "alias"]] | None = None
    event: list[str] | None = None
    when: str | None = None

    @field_validator("when")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_expression(value)
            except ExpressionError as exc:
                raise ValueError(exc.message) from None
        return value


class Filter(_Model):
    allow: Rule | None = None
    deny: Rule | None = None


class Playbook(_Model):
    """Sections as MetaRouter has them: global (every event), events (by event name; other calls by their
    type: `identify`, `page`...), default (events without a section of their own)."""

    filter: Filter = Filter()
    keep_event: bool = False  # start from the whole Segment event instead of an empty payload
    global_: Section = Field(Section(), alias="global")
    events: dict[str, Section] = {}
    default: Section = Section()
    function: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None


class Integration(_Model):
    name: Name
    kind: Literal["ga4", "meta_capi", "amplitude", "mixpanel", "braze", "webhook"]
    enabled: bool = True
    connection: dict[str, Any] = {}
    delivery: Delivery = Delivery()
    consent: str | None = None
    consent_required: bool = False  # True: an event without consent preferences is not sent either
    playbook: Playbook

    def __repr__(self) -> str:
        return f"Integration(name={self.name!r}, kind={self.kind!r}, connection={masked(self.connection)!r})"

    __str__ = __repr__


class Pipeline(_Model):
    name: Name
    write_keys: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]]
    integrations: list[Name] = []
    enabled: bool = True

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, write_keys=[{len(self.write_keys)} keys], " \
               f"integrations={self.integrations!r}, enabled={self.enabled})"

    __str__ = __repr__


class Settings(_Model):
    """The stream worker's settings."""

    dedup_window_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = 86_400
    max_future_s: Annotated[int, Field(ge=0)] = 3_600      # later than receivedAt + this: clamped to receivedAt
    allow_code: bool = False                              # playbooks may name Python functions


class Config(_Model):
    version: Literal[1] = 1
    _by_key: dict[str, Pipeline] = PrivateAttr(default_factory=dict)
    settings: Settings = Settings()
    pipelines: list[Pipeline] = []
    integrations: list[Integration] = []

    def integration(self, name: str) -> Integration:
        for integration in self.integrations:
            if integration.name == name:
                return integration
        raise KeyError(name)

    def pipeline_for(self, write_key: str) -> Pipeline | None:
        """The pipeline that owns `write_key` (enabled or not), or None."""
        return self._by_key.get(write_key)

    def model_post_init(self, context: Any, /) -> None:
        self._by_key.update({key: p for p in self.pipelines for key in p.write_keys})

    def write_keys(self) -> frozenset[str]:
        """The writeKeys of the enabled pipelines."""
        return frozenset(k for p in self.pipelines if p.enabled for k in p.write_keys)


# -- loading -------------------------------------------------------------------------------------------
Check = Callable[["Config"], list[str]]
"""More checks of a config that parsed: problems with their paths, reported with the model's own (the
CLI adds the vendors' connection checks, which schemas/ cannot import: eventrouter/ops.py)."""


def load_config(path: str | Path, checks: Sequence[Check] = ()) -> Config:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, base=path.parent, source=str(path), checks=checks)


def parse_config(text: str, base: Path | None = None, source: str = "config", checks: Sequence[Check] = ()) -> Config:
    """Parse YAML text; `base` is where `file:` playbooks are looked up."""
    return config_from_document(resolved_document(text, base, source), source, checks)


def resolved_document(text: str, base: Path | None = None, source: str = "config") -> dict[str, Any]:
    """The YAML text as a plain document with every `starter:` and `file:` playbook inlined: what
    `config apply` publishes, so that workers need no files. Raises ConfigurationError when the text
    is not YAML, or names playbooks that cannot be read."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not YAML: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigurationError(f"{source}: the top level must be a mapping")
    problems: list[str] = []
    document = _resolve_playbooks(document, base, problems)
    if problems:
        try:
            Config.model_validate(document)
        except ValidationError as exc:
            problems.extend(f"{_path(e['loc'])}: {_message(e)}" for e in exc.errors())
        raise ConfigurationError(_report(source, problems))
    return document


def config_from_document(document: Mapping[str, Any], source: str = "config", checks: Sequence[Check] = ()) -> Config:
    """Check a resolved document (every problem at once, `checks` included) and make the frozen Config."""
    problems: list[str] = []
    try:
        config = Config.model_validate(document)
    except ValidationError as exc:
        problems.extend(f"{_path(e['loc'])}: {_message(e)}" for e in exc.errors())
        raise ConfigurationError(_report(source, problems)) from None
    problems.extend(_cross_checks(config))
    for check in checks:
        problems.extend(check(config))
    if problems:
        raise ConfigurationError(_report(source, problems))
    return config


def _report(source: str, problems: list[str]) -> str:
    return f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}\n" + \
        "\n".join(f"  {p}" for p in problems)


def _resolve_playbooks(document: dict[str, Any], base: Path | None, problems: list[str]) -> dict[str, Any]:
    integrations = document.get("integrations")
    if not isinstance(integrations, list):
        return document
    resolved = []
    for index, integration in enumerate(integrations):
        if isinstance(integration, dict) and isinstance(integration.get("playbook"), str):
            reference = integration["playbook"]
            loaded = _load_playbook(reference, base, f"integrations[{index}].playbook", problems)
            integration = {**integration, "playbook": loaded if loaded is not None else {}}  # noqa: PLW2901
        resolved.append(integration)
    return {**document, "integrations": resolved}


def starter_names() -> list[str]:
    folder = resources.files("schemas").joinpath("starters")
    return sorted(f.name.removesuffix(".yaml") for f in folder.iterdir() if f.name.endswith(".yaml"))


def starter_text(name: str) -> str:
    return resources.files("schemas").joinpath(f"starters/{name}.yaml").read_text()


def _load_playbook(reference: str, base: Path | None, where: str, problems: list[str]) -> Any:
    if reference.startswith("starter:"):
        name = reference.removeprefix("starter:")
        if name not in starter_names():
            problems.append(f"{where}: no starter kit {name!r}; shipped: {', '.join(starter_names())}")
            return None
        return yaml.safe_load(starter_text(name))
    if reference.startswith("file:"):
        path = Path(reference.removeprefix("file:"))
        path = path if path.is_absolute() or base is None else base / path
        try:
            return yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"{where}: cannot read {path}: {exc}")
            return None
    problems.append(f"{where}: a playbook is a mapping, 'starter:NAME' or 'file:PATH', got {reference!r}")
    return None


def _cross_checks(config: Config) -> list[str]:
    problems = []
    names = [i.name for i in config.integrations]
    for index, name in enumerate(names):
        if names.index(name) != index:
            problems.append(f"integrations[{index}].name: {name!r} is used twice")
    seen_keys: dict[str, str] = {}
    pipeline_names = [p.name for p in config.pipelines]
    for index, pipeline in enumerate(config.pipelines):
        if pipeline_names.index(pipeline.name) != index:
            problems.append(f"pipelines[{index}].name: {pipeline.name!r} is used twice")
        for ref_index, ref in enumerate(pipeline.integrations):
            if ref not in names:
                problems.append(f"pipelines[{index}].integrations[{ref_index}]: no integration named {ref!r}")
        for key in pipeline.write_keys:
            if key in seen_keys:
                problems.append(f"pipelines[{index}].write_keys: a writeKey is also in pipeline {seen_keys[key]!r}")
            seen_keys.setdefault(key, pipeline.name)
    for index, integration in enumerate(config.integrations):
        if integration.playbook.function and not config.settings.allow_code:
            problems.append(f"integrations[{index}].playbook.function: code in playbooks is off; "
                            "set settings.allow_code: true to allow it")
        for key, value in _flatten(integration.connection, "connection"):
            if looks_secret(key) and isinstance(value, str) and value and not SECRET_REFERENCE.fullmatch(value):
                problems.append(f"integrations[{index}].{key}: a secret must be a ${{ENV_VAR}} reference, "
                                "not the value itself")
    return problems


def _flatten(value: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _flatten(v, f"{prefix}.{k}")]
    return [(prefix, value)]


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    dict_keys = {"events", "enrich", "connection"}
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif previous in dict_keys or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(part)):
            out += f'["{part}"]'
        else:
            out += f".{part}" if out else str(part)
        previous = part
    return out.replace("global_", "global").replace("from_", "from")


def _message(error: Mapping[str, Any]) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")
