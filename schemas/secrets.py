"""Secrets in the config: `${ENV_VAR}` references only, masked wherever they are shown, resolved from the
environment only where they are used (a forwarder's connection), and never logged or published."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, Final

from schemas.errors import ConfigurationError

SECRET_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def looks_secret(path: str) -> bool:
    """Whether a connection key by its name holds a secret (token, password, api_key...)."""
    last = path.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("secret", "token", "password", "api_key", "apikey", "access_key"))


def masked(value: Any) -> Any:
    """`value` with every string that is or holds a secret reference shown as ***."""
    if isinstance(value, dict):
        return {k: "***" if looks_secret(str(k)) and v else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and SECRET_REFERENCE.search(value):
        return "***"
    return value


def resolve_secrets(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """`value` with each ${ENV_VAR} replaced from the environment; ConfigurationError names what is unset
    or empty (never the values)."""
    env = os.environ if environ is None else environ
    missing: set[str] = set()

    def resolve(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: resolve(v) for k, v in item.items()}
        if isinstance(item, list):
            return [resolve(v) for v in item]
        if isinstance(item, str):
            def substitute(match: re.Match[str]) -> str:
                if not env.get(match.group(1)):  # unset or empty: a credential that cannot be right
                    missing.add(match.group(1))
                    return ""
                return env[match.group(1)]
            return SECRET_REFERENCE.sub(substitute, item)
        return item

    out = resolve(value)
    if missing:
        raise ConfigurationError(f"environment variables not set (or empty): {', '.join(sorted(missing))}")
    return out
