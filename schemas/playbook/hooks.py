"""Code hooks (`playbook.function: "package.module:name"`) are the operator's decision, not the config's.

Whoever can write a config (an editor; anyone who can write the config topic) must not be able to run
code in the worker. So the modules a playbook may name are listed in the environment of the process
that runs playbooks (worker, preview, `config validate`, `up`):

    EVENTROUTER_CODE_MODULES=mycompany.hooks,mycompany.more_hooks

Unset or empty: no code hooks at all. A playbook naming a function of any other module, or a private
name (`_x`), is refused at `config validate` and when the worker compiles the revision, with its path.
The config's own `settings.allow_code` no longer grants anything (a warning says so).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from schemas.errors import ConfigurationError

CODE_MODULES_ENV: Final = "EVENTROUTER_CODE_MODULES"


def code_modules(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The modules this process's operator allows playbooks to name (empty: none)."""
    raw = (os.environ if environ is None else environ).get(CODE_MODULES_ENV, "")
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


def function_problem(reference: str, modules: Collection[str]) -> str | None:
    """Why `reference` ("module:name") may not run here, or None."""
    module, _, name = reference.partition(":")
    if not modules:
        return (f"code hooks are off: the operator lists the modules playbooks may name in {CODE_MODULES_ENV} "
                "(the config cannot turn them on)")
    if module not in modules:
        return f"module {module!r} is not in {CODE_MODULES_ENV} ({', '.join(sorted(modules))})"
    if not name or name.startswith("_"):
        return f"{name!r} is a private name"
    return None


def load_function(reference: str, modules: Collection[str], where: str) -> Callable[..., Any]:
    """The function `reference` names, imported; ConfigurationError (with `where`) when it may not run or
    cannot be found."""
    problem = function_problem(reference, modules)
    if problem is not None:
        raise ConfigurationError(f"{where}: {problem}")
    module, _, name = reference.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{where}: cannot load {reference}: {type(exc).__name__}: {exc}") from None
    if not callable(function):
        raise ConfigurationError(f"{where}: {reference} is not a function")
    return function  # type: ignore[no-any-return]
