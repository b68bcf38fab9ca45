"""The console's changes to a config document, each a new document (the revision in force is never
edited): writeKeys made and revoked, pipelines and integrations enabled or disabled, an integration added
from its starter kit or removed, its connection or playbook replaced. Pure: the handler validates the
result whole (schemas/config.py) and publishes it as a new revision."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from forwarders.vendors import VENDORS
from schemas.documents import load_yaml
from schemas.errors import ConfigurationError
from schemas.playbook.model import starter_text

Document = dict[str, Any]


def _copy(document: Mapping[str, Any]) -> Document:
    return {**document, "pipelines": [dict(p) for p in document.get("pipelines") or ()],
            "integrations": [dict(i) for i in document.get("integrations") or ()]}


def _entry(entries: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    for entry in entries:
        if entry.get("name") == name:
            return entry
    raise ConfigurationError(f"{what}: no {what} named {name!r}")


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


def add_write_key(document: Mapping[str, Any], pipeline: str) -> tuple[Document, str]:
    """A new writeKey for `pipeline`, next to its others (a rotation: revoke the old one once senders moved)."""
    out = _copy(document)
    entry = _entry(out["pipelines"], pipeline, "pipeline")
    key = new_write_key()
    entry["write_keys"] = [*entry.get("write_keys", []), key]
    return out, key


def add_pipeline(document: Mapping[str, Any], name: str) -> tuple[Document, str]:
    """A new pipeline (a source) with one new writeKey and no integration yet."""
    out = _copy(document)
    if any(p.get("name") == name for p in out["pipelines"]):
        raise ConfigurationError(f"name: a pipeline named {name!r} exists already")
    key = new_write_key()
    out["pipelines"].append({"name": name, "write_keys": [key], "integrations": []})
    return out, key


def revoke_write_key(document: Mapping[str, Any], pipeline: str, index: int) -> tuple[Document, str]:
    """`pipeline` without its writeKey at `index` (keys are shown cut, so the page names them by place);
    the revoked key, for the audit. A pipeline keeps at least one key: disable it to refuse all."""
    out = _copy(document)
    entry = _entry(out["pipelines"], pipeline, "pipeline")
    keys = list(entry.get("write_keys", []))
    if not 0 <= index < len(keys):
        raise ConfigurationError(f"write_keys[{index}]: {pipeline} has no such key")
    if len(keys) == 1:
        raise ConfigurationError(f"write_keys: {pipeline}'s last key; disable the pipeline to refuse its events")
    revoked = keys.pop(index)
    entry["write_keys"] = keys
    return out, revoked


def set_enabled(document: Mapping[str, Any], what: str, name: str, enabled: bool) -> Document:
    """`what` is "pipeline" or "integration"."""
    out = _copy(document)
    _entry(out[f"{what}s"], name, what)["enabled"] = enabled
    return out


def connection_template(kind: str) -> dict[str, Any]:
    """A new integration's connection: each required setting as an `${ENV}` reference to fill in where the
    forwarders run (secrets stay references; other values may be written in instead)."""
    settings = VENDORS[kind].settings_type
    return {name: "${" + f"{kind}_{name}".upper() + "}" for name, field in settings.model_fields.items()
            if field.is_required()}


def add_integration(document: Mapping[str, Any], name: str, kind: str, pipelines: list[str]) -> Document:
    """A new integration of `kind` from its starter kit, sent to by `pipelines`."""
    if kind not in VENDORS:
        raise ConfigurationError(f"kind: no destination of kind {kind!r}")
    out = _copy(document)
    if any(i.get("name") == name for i in out["integrations"]):
        raise ConfigurationError(f"name: an integration named {name!r} exists already")
    playbook = load_yaml(starter_text(kind), f"starter:{kind}")
    out["integrations"].append({"name": name, "kind": kind, "connection": connection_template(kind),
                                "playbook": playbook})
    for pipeline in pipelines:
        entry = _entry(out["pipelines"], pipeline, "pipeline")
        entry["integrations"] = [*entry.get("integrations", []), name]
    return out


def remove_integration(document: Mapping[str, Any], name: str) -> Document:
    out = _copy(document)
    _entry(out["integrations"], name, "integration")
    out["integrations"] = [i for i in out["integrations"] if i.get("name") != name]
    for pipeline in out["pipelines"]:
        pipeline["integrations"] = [n for n in pipeline.get("integrations", []) if n != name]
    return out


def set_connection(document: Mapping[str, Any], name: str, text: str) -> Document:
    """`name`'s connection replaced with the YAML mapping in `text` (a literal secret is refused by the
    config's own check, with its path)."""
    connection = load_yaml(text, "connection") if text.strip() else {}
    if not isinstance(connection, dict):
        raise ConfigurationError("connection: must be a mapping of settings")
    out = _copy(document)
    _entry(out["integrations"], name, "integration")["connection"] = connection
    return out


def set_policy(document: Mapping[str, Any], name: str, consent: str, consent_required: bool,
               delivery_text: str) -> Document:
    """`name`'s consent category (empty: none), whether consent is required, and its delivery settings (a
    YAML mapping; empty: the defaults). The config's own check says what is wrong, with the path."""
    delivery = load_yaml(delivery_text, "delivery") if delivery_text.strip() else {}
    if not isinstance(delivery, dict):
        raise ConfigurationError("delivery: must be a mapping of settings")
    out = _copy(document)
    entry = _entry(out["integrations"], name, "integration")
    for key, value in (("consent", consent.strip() or None), ("consent_required", consent_required or None),
                       ("delivery", delivery or None)):
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return out


def set_playbook(document: Mapping[str, Any], name: str, text: str) -> Document:
    out = _copy(document)
    _entry(out["integrations"], name, "integration")["playbook"] = load_yaml(text, "playbook")
    return out
