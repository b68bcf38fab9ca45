"""What each process `eventrouter up` (and the demo) starts finds in its environment: the least it needs.

A child gets the process basics (PATH, HOME, the locale, PYTHON*, VIRTUAL_ENV, EVENTROUTER_* settings,
the CA bundle), the names the Kafka security file refers to (every child is a Kafka client), and only
then what its own work resolves: a forwarder the `${ENV}` names of its integration's connection; a
worker nothing more (playbooks resolve no environment variable); the internet-facing gateway nothing
more. So one process read or broken into yields its own vendor's secrets at most, the gateway none."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from schemas.runtime.kafka import KAFKA_CONFIG_ENV
from schemas.secrets import SECRET_REFERENCE, looks_secret

BASICS: Final = frozenset({"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "USER", "LOGNAME", "VIRTUAL_ENV",
                           "LD_LIBRARY_PATH", "SSL_CERT_FILE", "SSL_CERT_DIR"})
BASIC_PREFIXES: Final = ("PYTHON", "LC_", "EVENTROUTER_")


def basics(environ: Mapping[str, str]) -> dict[str, str]:
    """The process basics of `environ` (an EVENTROUTER_ name that reads like a secret is not one)."""
    return {name: value for name, value in environ.items()
            if (name in BASICS or name.startswith(BASIC_PREFIXES)) and not looks_secret(name.lower())}


def kafka_names(environ: Mapping[str, str]) -> set[str]:
    """The `${ENV}` names the Kafka security file ($EVENTROUTER_KAFKA_CONFIG) refers to (sasl.password...)."""
    path = environ.get(KAFKA_CONFIG_ENV)
    if not path:
        return set()
    try:
        text = Path(path).read_text()
    except OSError:
        return set()  # the child says what is wrong with it when it starts
    lines = (line for line in text.splitlines() if not line.strip().startswith(("#", "!")))
    return {name for line in lines for name in SECRET_REFERENCE.findall(line)}


SET_NAMES_ENV = "EVENTROUTER_SET_NAMES"  # the console's under `up`: the `${ENV}` names set for the forwarders


def child_environment(environ: Mapping[str, str], names: Iterable[str] = ()) -> dict[str, str]:
    """A child's environment: the basics of `environ`, the Kafka security file's names, and `names`."""
    wanted = kafka_names(environ) | set(names)
    return {**basics(environ), **{name: environ[name] for name in sorted(wanted) if name in environ}}
