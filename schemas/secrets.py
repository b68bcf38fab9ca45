"""Secrets in the config: `${ENV_VAR}` references only, masked wherever they are shown, resolved from the
environment only where they are used (a forwarder's connection), and never logged or published.

Every value `resolve_secrets()` resolves is also given to the process's scrubber (`SCRUBBER`), which
replaces it, and its common encodings (URL-encoded, base64, inside a base64 `user:pass`, JSON-escaped),
with `***` by value wherever text leaves the process: a vendor's answer kept in a dead letter or receipt,
an error's message, and every log line (`ScrubbingFilter`, installed by every `eventrouter` process). A
value shorter than MIN_SCRUBBED_CHARS is not scrubbed: scrubbing `a` or `42` would garble every line,
and no credential is that short (a short value is a port, a region, a tenant name)."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, quote_plus, urlsplit

from schemas.errors import ConfigurationError

SECRET_REFERENCE: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MIN_SCRUBBED_CHARS: Final = 6
MASK: Final = "***"
# Headers whose values are public by definition (content negotiation, the client's name): anything else a
# config sets (X-Api-Key, X-Tenant, a vendor's own) may be a credential, and a name cannot tell which.
PLAIN_HEADERS: Final = frozenset({"content-type", "accept", "accept-language", "user-agent", "cache-control"})
# A header value that may stand in the config: one reference, after an auth scheme word at most.
HEADER_REFERENCE: Final = re.compile(r"(?:[A-Za-z][A-Za-z0-9_-]{0,19}[ ]+)?\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_CREDENTIAL_WORDS: Final = ("secret", "token", "password", "passwd", "pwd", "key", "auth", "signature", "sig",
                            "credential", "session")


def looks_secret(path: str) -> bool:
    """Whether a connection key by its name holds a secret (token, password, api_key...)."""
    last = path.rsplit(".", 1)[-1].lower()
    return any(word in last for word in ("secret", "token", "password", "api_key", "apikey", "access_key"))


def masked(value: Any) -> Any:
    """`value` with every string that is or holds a secret reference shown as ***, and with what may be a
    literal secret masked too: a header's value (but PLAIN_HEADERS'), a URL's password and its
    credential-like query values."""
    if isinstance(value, dict):
        return {k: MASK if looks_secret(str(k)) and v else
                {h: v2 if str(h).lower() in PLAIN_HEADERS and not _holds_reference(v2) else MASK
                 for h, v2 in v.items()} if k == "headers" and isinstance(v, dict) else masked(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, str) and SECRET_REFERENCE.search(value):
        return MASK
    if isinstance(value, str) and "://" in value:
        return _masked_url(value)
    return value


def _holds_reference(value: Any) -> bool:
    return isinstance(value, str) and bool(SECRET_REFERENCE.search(value))


def credential_name(name: str) -> bool:
    """Whether a URL query parameter by its name carries a credential (token, api_key, key, sig...)."""
    lowered = name.lower()
    words = set(re.split(r"[^a-z0-9]+", lowered))
    return bool(words & {*_CREDENTIAL_WORDS, "apikey", "pass", "authorization", "credentials", "jwt"}) or \
        lowered.endswith(("token", "secret", "key", "password"))


def _masked_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        pairs = [pair.partition("=") for pair in parts.query.split("&")] if parts.query else []
    except ValueError:
        return MASK
    netloc = parts.netloc
    if parts.password:
        netloc = f"{parts.username}:{MASK}@{netloc.rpartition('@')[2]}"
    elif parts.username:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = "&".join(f"{k}{sep}{MASK if sep and credential_name(k) else v}" for k, sep, v in pairs)
    return parts._replace(netloc=netloc, query=query).geturl()


def literal_secrets(connection: Mapping[str, Any], where: str) -> list[str]:
    """Where a connection holds what may be a literal secret (paths from `where`, never the values): a
    header value that is not a reference (but PLAIN_HEADERS'), credentials in a URL, a credential-like
    URL query parameter whose value is not a reference. (Keys named like secrets: schemas/config.py.)"""
    problems = []
    headers = connection.get("headers")
    if isinstance(headers, dict):
        for name, value in headers.items():
            if str(name).lower() in PLAIN_HEADERS:
                continue
            if not isinstance(value, str) or not HEADER_REFERENCE.fullmatch(value):
                problems.append(f"{where}.headers.{name}: a header's value must be a ${{ENV_VAR}} reference "
                                f"(after an auth scheme at most: \"Bearer ${{TOKEN}}\"), not the value itself; "
                                f"only {', '.join(sorted(PLAIN_HEADERS))} may be literal")
    for path, value in _strings(connection, where):
        if "://" not in value or SECRET_REFERENCE.fullmatch(value):
            continue
        try:
            parts = urlsplit(value)
            userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
        except ValueError:
            continue
        if userinfo and SECRET_REFERENCE.sub("", userinfo).strip(":"):
            problems.append(f"{path}: credentials in the URL must be ${{ENV_VAR}} references, not the values")
        for name, _, given in (pair.partition("=") for pair in parts.query.split("&") if pair):
            if credential_name(name) and given and not SECRET_REFERENCE.fullmatch(given):
                problems.append(f"{path}: the query parameter {name!r} must be a ${{ENV_VAR}} reference, "
                                "not the value itself")
    return problems


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for k, v in value.items() for pair in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [pair for i, v in enumerate(value) for pair in _strings(v, f"{path}[{i}]")]
    return [(path, value)] if isinstance(value, str) else []


def referenced_names(value: Any) -> set[str]:
    """The `${ENV}` names `value` (a connection, any nesting) refers to."""
    return {name for _, text in _strings(value, "") for name in SECRET_REFERENCE.findall(text)}


def unscrubbed_names(value: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """The `${ENV}` names `value` refers to whose values are set but too short to scrub by value."""
    env = os.environ if environ is None else environ
    return sorted(n for n in referenced_names(value) if 0 < len(env.get(n) or "") < MIN_SCRUBBED_CHARS)


class Scrubber:
    """Replaces each secret value it was given, and its common encodings, with *** (see the module's
    docstring). Values may be added at any time (thread-safe); `scrub` reads the current set."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._needles: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*values)

    def add(self, *values: str) -> None:
        with self._lock:
            before = len(self._needles)
            for value in values:
                if isinstance(value, str) and len(value) >= MIN_SCRUBBED_CHARS:
                    self._needles.update(encodings(value))
            if len(self._needles) != before:
                ordered = sorted(self._needles, key=len, reverse=True)  # a longer form first: no part left over
                self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text


def encodings(value: str) -> set[str]:
    """`value` as it may be seen: itself, URL-encoded, JSON-escaped, base64 (alone, or the part of a base64
    text that holds it wherever it stands in the encoded text: `Basic base64(user:value)`)."""
    raw = value.encode("utf-8", "surrogatepass")
    out = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1],
           json.dumps(value, ensure_ascii=False)[1:-1], base64.b64encode(raw).decode(),
           base64.urlsafe_b64encode(raw).decode()}
    for shift in range(3):  # value's bytes at each offset of a base64 group: the characters only it decides
        encoded = base64.b64encode(b"\0" * shift + raw).decode()
        core = encoded[-(-8 * shift // 6):(8 * (shift + len(raw))) // 6]
        if len(core) >= 8:
            out.add(core)
            out.add(core.replace("+", "-").replace("/", "_"))
    return {form for form in out if len(form) >= MIN_SCRUBBED_CHARS}


SCRUBBER: Final = Scrubber()
"""The process's scrubber: every value `resolve_secrets()` resolved, and what vendors add (their basic auth)."""


def scrub(text: str) -> str:
    """`text` with every secret this process knows (SCRUBBER) replaced with ***."""
    return SCRUBBER.scrub(text)


class ScrubbingFilter(logging.Filter):
    """A handler filter: the record's message, its exception's text and stack scrubbed (SCRUBBER)."""

    def __init__(self, scrubber: Scrubber = SCRUBBER) -> None:
        super().__init__()
        self.scrubber = scrubber

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.scrubber:
            return True
        message = record.getMessage()
        clean = self.scrubber.scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrubber.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrubber.scrub(record.stack_info)
        return True


def install_log_scrubbing(logger: logging.Logger | None = None) -> None:
    """Add a ScrubbingFilter to each handler of `logger` (the root) that has none: every line they write;
    and scrub what Python prints of an exception nothing caught, in any thread."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, ScrubbingFilter) for f in handler.filters):
            handler.addFilter(ScrubbingFilter())
    sys.excepthook = scrubbed_excepthook
    threading.excepthook = scrubbed_thread_excepthook


def uncaught_text(kind: type[BaseException], exc: BaseException, tb: TracebackType | None,
                  scrubber: Scrubber = SCRUBBER) -> str:
    """The traceback Python would print for an uncaught exception, scrubbed."""
    return scrubber.scrub("".join(traceback.format_exception(kind, exc, tb)))


def scrubbed_excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(uncaught_text(kind, exc, tb))


def scrubbed_thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "?"
    sys.stderr.write(f"Exception in thread {name}:\n"
                     + uncaught_text(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback))


def resolve_secrets(value: Any, environ: Mapping[str, str] | None = None, *,
                    scrubber: Scrubber | None = SCRUBBER) -> Any:
    """`value` with each ${ENV_VAR} replaced from the environment; ConfigurationError names what is unset
    or empty (never the values). Each value resolved is given to `scrubber` (the process's)."""
    env = os.environ if environ is None else environ
    missing: set[str] = set()
    resolved: list[str] = []

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
                resolved.append(env[match.group(1)])
                return env[match.group(1)]
            return SECRET_REFERENCE.sub(substitute, item)
        return item

    out = resolve(value)
    if scrubber is not None:
        scrubber.add(*resolved)
    if missing:
        raise ConfigurationError(f"environment variables not set (or empty): {', '.join(sorted(missing))}")
    return out
