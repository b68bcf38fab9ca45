"""The config checks every command that runs a config file makes (`config validate | apply`, `up`,
`worker --config`): `load_checked()`, the model's checks plus what each forwarder would refuse at its start."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from schemas.config import Config


def load_checked(path: str | Path) -> Config:
    """The config file, every problem at once (ConfigurationError), the forwarders' too: an integration
    whose forwarder would refuse to start is refused here, with its path."""
    from schemas.config import load_config

    return load_config(path, checks=[connection_problems])


def connection_problems(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """What each integration's forwarder would refuse at start (`vendor_for(kind, connection)`): its
    vendor's settings (unknown keys, missing or mistyped values) and, for every vendor, the destination
    guard's literal checks of its URL (forwarders/ssrf.py): scheme, credentials, a loopback, private or
    link-local address written as such (in any form: `2130706433`, `[::ffff:127.0.0.1]`,
    `[64:ff9b::a9fe:a9fe]`) or `localhost`, `allow_http` / `allow_private`, and the operator's
    EVENTROUTER_PRIVATE_NETWORKS here. Secrets are not resolved: a value that holds a `${ENV}`
    reference is known only where it runs, and no name is looked up in DNS (the forwarder judges what
    a name resolves to before each send)."""
    from pydantic import ValidationError

    from forwarders.ssrf import Allowance, UnsafeDestination, check_literal, operator_networks
    from forwarders.vendors import VENDORS
    from schemas.errors import ConfigurationError
    from schemas.secrets import SECRET_REFERENCE

    problems = []
    try:
        networks = operator_networks(environ)
    except ConfigurationError as exc:
        problems.append(str(exc))
        networks = ()
    for index, integration in enumerate(config.integrations):
        where = f"integrations[{index}].connection"
        vendor = VENDORS[integration.kind]
        settings_type = vendor.settings_type
        try:
            settings = settings_type(**integration.connection)
        except ValidationError as exc:
            for error in exc.errors():
                value = _at(integration.connection, error["loc"])
                if isinstance(value, str) and SECRET_REFERENCE.search(value):
                    continue  # "${PORT}" for a number: what it holds is known where it runs
                key = ".".join(map(str, error["loc"]))
                problems.append(f"{where}.{key}: " + (
                    f"unknown key; {integration.kind} connections take: {', '.join(settings_type.model_fields)}"
                    if error["type"] == "extra_forbidden"
                    else str(error["msg"]).removeprefix("Value error, ")))
            continue
        key = "endpoint" if settings.endpoint else vendor.endpoint_key
        url = str(getattr(settings, key, None) or vendor.default_endpoint)
        scheme, host = urlsplit(url)[:2]
        if SECRET_REFERENCE.search(scheme) or SECRET_REFERENCE.search(host):
            continue  # where it goes is known where it runs: the forwarder checks it at start and each send
        try:
            check_literal(SECRET_REFERENCE.sub("x", url),
                          Allowance(settings.allow_http, settings.allow_private, networks))
        except UnsafeDestination as exc:
            problems.append(f"{where}.{key}: {exc.message}")
    return problems


def unset_references(connection: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """The `${ENV}` names in a connection that are unset or empty in `environ` (not an error where the
    config is checked: where the forwarder runs they may be set)."""
    from schemas.secrets import SECRET_REFERENCE

    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str):
            found.update(name for name in SECRET_REFERENCE.findall(value) if not environ.get(name))

    walk(connection)
    return sorted(found)


def _at(value: Any, loc: tuple[Any, ...]) -> Any:
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value
