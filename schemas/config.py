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

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationError

from schemas.catalogue import known_kind
from schemas.delivery import Delivery
from schemas.documents import check_document, load_yaml, read_document
from schemas.errors import ConfigurationError
from schemas.playbook.hooks import CODE_MODULES_ENV, code_modules, function_problem
from schemas.playbook.model import (
    Playbook,
    starter_names,
    starter_text,
)
from schemas.secrets import SECRET_REFERENCE, literal_secrets, looks_secret, masked

log = logging.getLogger(__name__)
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"

Name = Annotated[str, StringConstraints(pattern=_NAME)]


class _Model(BaseModel):
    # as the playbook's models (schemas/playbook/model.py StrictModel): a field's docstring is its description
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)


class Integration(_Model):
    name: Name
    """Names its topics (`<prefix>.out.<name>`) and is what pipelines list."""
    kind: Annotated[str, AfterValidator(known_kind)]
    """The vendor: one of the destination catalogue (schemas/catalogue.py); its connection keys are listed
    under Vendor connections."""
    enabled: bool = True
    """false: events are not routed to it, and `up` runs no forwarder for it."""
    connection: dict[str, Any] = {}
    """The vendor's connection settings; secrets as `${ENV_VAR}` references."""
    delivery: Delivery = Delivery()
    """Batching, rate, retries and timeouts (Delivery keys below)."""
    consent: str | None = None
    """The consent category (`analytics`, `advertising`...): events whose `context.consent` opts out of it
    are not sent."""
    consent_required: bool = False
    """true: an event without consent preferences is not sent either."""
    playbook: Playbook
    """Inline, `starter:<kind>`, or `file:path.yaml` relative to the config file."""

    def __repr__(self) -> str:
        return f"Integration(name={self.name!r}, kind={self.kind!r}, connection={masked(self.connection)!r})"

    __str__ = __repr__


class Pipeline(_Model):
    name: Name
    """The pipeline's name."""
    write_keys: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]]
    """The writeKeys whose events this pipeline routes; a writeKey belongs to one pipeline."""
    integrations: list[Name] = []
    """Names of the integrations its events go to."""
    enabled: bool = True
    """false: its writeKeys are refused (`auth.pipeline_disabled`)."""

    def __repr__(self) -> str:
        return f"Pipeline(name={self.name!r}, write_keys=[{len(self.write_keys)} keys], " \
               f"integrations={self.integrations!r}, enabled={self.enabled})"

    __str__ = __repr__


class Settings(_Model):
    """The stream worker's settings."""

    dedup_window_s: Annotated[int, Field(ge=0, le=30 * 86_400)] = 86_400
    """A messageId seen again in the same pipeline within this many seconds is dropped."""
    max_future_s: Annotated[int, Field(ge=0)] = 3_600
    """An event time later than receivedAt + this is taken as receivedAt."""
    allow_code: bool = False
    """Ignored (a warning): EVENTROUTER_CODE_MODULES decides, outside the config."""


class Config(_Model):
    version: Literal[1] = 1
    """The config format's version."""
    _by_key: dict[str, Pipeline] = PrivateAttr(default_factory=dict)
    settings: Settings = Settings()
    """The stream worker's settings."""
    pipelines: list[Pipeline] = []
    """Sources of events: writeKeys and the integrations their events go to."""
    integrations: list[Integration] = []
    """Destinations: a vendor, its connection, delivery policy and playbook."""

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
CLI adds the vendors' connection checks, which schemas/ cannot import: eventrouter/checks.py)."""


def load_config(path: str | Path, checks: Sequence[Check] = ()) -> Config:
    path = Path(path)
    try:
        text = read_document(path)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_config(text, base=path.parent, source=str(path), checks=checks)


def parse_config(text: str, base: Path | None = None, source: str = "config", checks: Sequence[Check] = ()) -> Config:
    """Parse YAML text; `base` is where `file:` playbooks are looked up."""
    return config_from_document(resolved_document(text, base, source), source, checks)


def resolved_document(text: str, base: Path | None = None, source: str = "config") -> dict[str, Any]:
    """The YAML text as a plain document with every `starter:` and `file:` playbook inlined: what
    `config apply` publishes, so that workers need no files. Raises ConfigurationError when the text
    is not YAML, or names playbooks that cannot be read."""
    document = load_yaml(text, source)  # no aliases, bounded size and nesting, plain data
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
    problems = check_document(document)  # a topic's document gets the YAML loader's checks too
    if problems:
        raise ConfigurationError(_report(source, problems))
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


def _load_playbook(reference: str, base: Path | None, where: str, problems: list[str]) -> Any:
    if reference.startswith("starter:"):
        name = reference.removeprefix("starter:")
        if name not in starter_names():
            problems.append(f"{where}: no starter kit {name!r}; shipped: {', '.join(starter_names())}")
            return None
        return load_yaml(starter_text(name), reference)
    if reference.startswith("file:"):
        path = Path(reference.removeprefix("file:"))
        path = path if path.is_absolute() or base is None else base / path
        try:
            return load_yaml(read_document(path), str(path))
        except (OSError, ValueError, ConfigurationError) as exc:
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
    if config.settings.allow_code:
        log.warning("settings.allow_code is ignored: the modules playbooks may name are in %s", CODE_MODULES_ENV)
    modules = code_modules()
    for index, integration in enumerate(config.integrations):
        if integration.playbook.function and (problem := function_problem(integration.playbook.function, modules)):
            problems.append(f"integrations[{index}].playbook.function: {problem}")
        for key, value in _flatten(integration.connection, "connection"):
            if looks_secret(key) and isinstance(value, str) and value and not SECRET_REFERENCE.fullmatch(value) \
                    and not key.startswith("connection.headers."):  # headers: literal_secrets()
                problems.append(f"integrations[{index}].{key}: a secret must be a ${{ENV_VAR}} reference, "
                                "not the value itself")
        problems += literal_secrets(integration.connection, f"integrations[{index}].connection")
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
