"""What each console screen shows, from the config revision in force and the catalogue: plain rows,
tested without a browser. Secrets never reach a row: a connection shows its `${ENV}` references (and
whether each is set in the console's environment), never a value; writeKeys are shown cut."""

from __future__ import annotations

import difflib
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from eventrouter.console.audit import REVISION, AuditRecord
from forwarders.facts import Facts, facts
from schemas.catalogue import CATALOGUE
from schemas.config import Config, Integration
from schemas.documents import load_yaml
from schemas.errors import ConfigurationError
from schemas.playbook.model import starter_names
from schemas.runtime.revisions import Revision
from schemas.secrets import MASK, PLAIN_HEADERS, SECRET_REFERENCE, looks_secret, masked, referenced_names


def cut_key(key: str) -> str:
    """A writeKey as a page shows it: enough to tell keys apart (its start and a short fingerprint), not
    enough to use one."""
    return f"{key[:4] if len(key) > 8 else ''}…{hashlib.sha256(key.encode()).hexdigest()[:6]}"


def with_keys_cut(document: Mapping[str, Any]) -> dict[str, Any]:
    """A config document as a page shows it: every pipeline's writeKeys cut (a diff shows which changed)."""
    pipelines = [{**p, "write_keys": [cut_key(str(k)) for k in p.get("write_keys") or ()]}
                 if isinstance(p, Mapping) and isinstance(p.get("write_keys"), list) else p
                 for p in document.get("pipelines") or ()]
    return {**document, "pipelines": pipelines} if "pipelines" in document else dict(document)


@dataclass(frozen=True)
class SourceRow:
    name: str
    enabled: bool
    keys: tuple[str, ...]          # cut
    integrations: tuple[str, ...]


def sources(config: Config) -> list[SourceRow]:
    return [SourceRow(p.name, p.enabled, tuple(cut_key(k) for k in p.write_keys), tuple(p.integrations))
            for p in config.pipelines]


@dataclass(frozen=True)
class CatalogueRow:
    kind: str
    title: str
    docs: str
    configured: tuple[str, ...]    # the integrations of this kind
    starter: bool
    facts: Facts                   # what `eventrouter vendors` and docs/vendors/ say of it


def catalogue(config: Config) -> list[CatalogueRow]:
    starters = set(starter_names())
    return [CatalogueRow(d.kind, d.title, d.docs, tuple(i.name for i in config.integrations if i.kind == d.kind),
                         d.kind in starters, facts(d.kind)) for d in CATALOGUE]


def shown(value: Any, key: str = "") -> Any:
    """A connection as the console shows it: `${ENV}` references as written (they name a secret, they are
    not one); anything else that may be a secret masked (a value under a secret-like key, a header's
    value, a URL's credentials), as `config validate` masks it."""
    if isinstance(value, dict):
        return {k: {h: v if str(h).lower() in PLAIN_HEADERS or _holds_reference(v) else MASK for h, v in val.items()}
                if k == "headers" and isinstance(val, dict) else shown(val, str(k)) for k, val in value.items()}
    if isinstance(value, list):
        return [shown(v, key) for v in value]
    if _holds_reference(value):
        return value
    if isinstance(value, str) and looks_secret(key):
        return MASK
    return masked(value) if isinstance(value, str) else value


def _holds_reference(value: Any) -> bool:
    return isinstance(value, str) and bool(SECRET_REFERENCE.search(value))


@dataclass(frozen=True)
class Reference:
    name: str
    set_here: bool                 # set in the console's environment (the forwarders may differ)


@dataclass(frozen=True)
class IntegrationView:
    name: str
    kind: str
    title: str
    enabled: bool
    consent: str | None
    consent_required: bool
    pipelines: tuple[str, ...]
    connection: str                # YAML, masked: references as written, no value
    references: tuple[Reference, ...]
    delivery: str                  # YAML of the settings that differ from the defaults
    playbook: str                  # YAML


def _titles() -> dict[str, str]:
    return {d.kind: d.title for d in CATALOGUE}


def integration_view(revision: Revision, config: Config, name: str,
                     environ: Mapping[str, str]) -> IntegrationView:
    """KeyError: no such integration."""
    spec: Integration = config.integration(name)
    return IntegrationView(
        spec.name, spec.kind, _titles().get(spec.kind, spec.kind), spec.enabled, spec.consent,
        spec.consent_required, tuple(p.name for p in config.pipelines if spec.name in p.integrations),
        _yaml(shown(spec.connection)) if spec.connection else "",
        tuple(Reference(n, bool(environ.get(n))) for n in sorted(referenced_names(spec.connection))),
        _yaml(spec.delivery.model_dump(exclude_defaults=True)) if spec.delivery.model_fields_set else "",
        playbook_text(revision.document, name))


def integrations(revision: Revision, config: Config, environ: Mapping[str, str]) -> list[IntegrationView]:
    return [integration_view(revision, config, i.name, environ) for i in config.integrations]


def playbook_text(document: Mapping[str, Any], name: str) -> str:
    """The integration's playbook as the revision holds it (starter kits inlined), as YAML."""
    for integration in document.get("integrations") or ():
        if isinstance(integration, Mapping) and integration.get("name") == name:
            return _yaml(integration.get("playbook"))
    raise KeyError(name)


def playbook_changes(document: Mapping[str, Any], name: str, text: str) -> str:
    """The playbook being edited against the one in force, as a unified diff of both as YAML (so comments
    and layout do not count); empty when they agree or the text does not parse."""
    try:
        edited = load_yaml(text, "playbook")
    except ConfigurationError:
        return ""
    return "".join(difflib.unified_diff(playbook_text(document, name).splitlines(keepends=True),
                                        _yaml(edited).splitlines(keepends=True), "in force", "edited"))


@dataclass(frozen=True)
class RevisionRow:
    number: int
    when_ms: int
    by: str
    source: str
    sha: str
    current: bool


def revisions(history: list[Revision]) -> list[RevisionRow]:
    """Newest first."""
    newest = history[-1].number if history else 0
    return [RevisionRow(r.number, r.applied_at_ms, r.applied_by, r.source, r.sha256[:12], r.number == newest)
            for r in reversed(history)]


DIFFS_SHOWN = 3  # the newest revisions whose diff a list shows; each revision has a page with its own
_LINES: dict[str, list[str]] = {}  # sha -> the revision's document as YAML lines: a revision never changes
_DIFFS: dict[tuple[str, str], str] = {}  # (sha before, sha after) -> diff


def _lines_of(revision: Revision) -> list[str]:
    """A revision's document as YAML lines, dumped once (about 15 ms with 20 integrations)."""
    if revision.sha256 not in _LINES:
        if len(_LINES) >= 500:
            _LINES.clear()
        _LINES[revision.sha256] = _yaml(with_keys_cut(revision.document)).splitlines(keepends=True)
    return _LINES[revision.sha256]


def revision_diff(before: Revision | None, after: Revision) -> str:
    """`after`'s diff against the revision before it, worked out once; writeKeys cut (a viewer reads it)."""
    key = (before.sha256 if before else "", after.sha256)
    if key not in _DIFFS:
        if len(_DIFFS) >= 2_000:
            _DIFFS.clear()
        _DIFFS[key] = "".join(difflib.unified_diff(
            _lines_of(before) if before else [], _lines_of(after),
            f"revision {before.number}" if before else "(none)", f"revision {after.number}"))
    return _DIFFS[key]


def newest_diffs(history: list[Revision], shown: int = DIFFS_SHOWN) -> dict[int, str]:
    """Revision number -> its diff, for the newest `shown` revisions."""
    return {r.number: revision_diff(history[i - 1] if i else None, r) for i, r in enumerate(history)
            if i >= len(history) - shown}


def revision_and_before(history: list[Revision], number: int) -> tuple[Revision, Revision | None]:
    """KeyError: no such revision."""
    for i, r in enumerate(history):
        if r.number == number:
            return r, history[i - 1] if i else None
    raise KeyError(number)


def when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000)) + "Z"


@dataclass(frozen=True)
class AuditRow:
    record: AuditRecord
    href: str | None               # the page of what changed, where it has one


def audit_rows(history: list[Revision], records: list[AuditRecord]) -> list[AuditRow]:
    """Every change, newest first: each revision (from the config topic, whoever applied it, console or
    `config apply`), with its diff against the one before it for the newest and a link to its page; and
    the audit topic's other records."""
    rows = [AuditRow(r, None) for r in records]
    for i, r in enumerate(history):
        before = history[i - 1] if i else None
        rows.append(AuditRow(AuditRecord(r.applied_at_ms, r.applied_by, REVISION, f"revision {r.number}", r.source,
                                         revision_diff(before, r) if i >= len(history) - DIFFS_SHOWN else ""),
                             f"/revisions/{r.number}"))
    return sorted(rows, key=lambda row: row.record.at_ms, reverse=True)


def _yaml(value: Any) -> str:
    if value is None:
        return ""
    return yaml.dump(value, Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=100)


_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's, where PyYAML was built with it
