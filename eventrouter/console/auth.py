"""Who may do what in the console, decided without a network: password hashes (argon2id), roles, signed
session cookies that expire, CSRF tokens bound to a session, and a login limiter. Pure; the web layer
(eventrouter/console/web.py) only reads cookies and forms and calls these.

A session is a signed value, not a row in a store: `name|role|expires|nonce|signature`, HMAC-SHA256 under
the console's key. Several console processes given the same key (EVENTROUTER_CONSOLE_KEY) accept each
other's sessions; a logout revokes its nonce (`Sessions.revoke`) until the session would have expired.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

VIEWER: Final = "viewer"
EDITOR: Final = "editor"
ADMIN: Final = "admin"
ROLES: Final = (VIEWER, EDITOR, ADMIN)  # each may do what the ones before it may

# what each action needs (the server checks every request; pages hide what a role cannot do)
READ: Final = "read"                # every screen, PII masked
EDIT: Final = "edit"                # integrations, playbooks, revisions
KEYS: Final = "keys"                # writeKeys and users
NEEDS: Final = {READ: VIEWER, EDIT: EDITOR, KEYS: ADMIN}

SESSION_S: Final = 8 * 3600        # a session lasts a working day
# argon2id at OWASP's recommended minimum (Password Storage Cheat Sheet: 19 MiB, 2 iterations, 1 lane), not
# the library's default 64 MiB: every login held that much for its duration, most of the console's peak
# memory (127 MiB at start against 78 MiB resident). Hashes made with other parameters still verify.
_HASHER: Final = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def can(role: str, action: str) -> bool:
    return role in ROLES and ROLES.index(role) >= ROLES.index(NEEDS[action])


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY: Final = hash_password(secrets.token_hex(8))  # compared against when the name is unknown: same time


def check_login(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if the password is theirs; None otherwise, in about the same time whether or not the name
    exists (no way to learn which names do)."""
    user = users.get(name)
    matched = password_matches(user.password_hash if user else _DUMMY, password)
    return user if user is not None and matched else None


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class Session:
    name: str
    role: str
    expires: int    # epoch seconds
    nonce: str


class Sessions:
    """Issues and checks session values under one key; remembers revoked nonces until they expire."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.key, self.clock = key, clock
        self._revoked: dict[str, int] = {}

    def issue(self, user: User, lifetime_s: int = SESSION_S) -> str:
        session = Session(user.name, user.role, int(self.clock()) + lifetime_s, secrets.token_urlsafe(12))
        body = f"{_b64(session.name)}|{session.role}|{session.expires}|{session.nonce}"
        return f"{body}|{self._sign(body)}"

    def check(self, value: str | None) -> Session | None:
        """The session a cookie value holds, if signed by us, unexpired and not revoked; else None."""
        if not value or value.count("|") != 4:
            return None
        body, signature = value.rsplit("|", 1)
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        name, role, expires, nonce = body.split("|")
        try:
            session = Session(_unb64(name), role, int(expires), nonce)
        except ValueError:
            return None
        now = self.clock()
        if session.expires <= now or nonce in self._revoked or role not in ROLES:
            return None
        return session

    def revoke(self, session: Session) -> None:
        now = self.clock()
        self._revoked = {n: e for n, e in self._revoked.items() if e > now}
        self._revoked[session.nonce] = session.expires

    def csrf(self, session: Session) -> str:
        """The token every state-changing request signed in with this cookie must carry (a form field or header)."""
        return self._sign(f"csrf|{session.nonce}")

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf(session))

    def _sign(self, body: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self.key, body.encode(), hashlib.sha256).digest()).decode()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a session name") from exc


@dataclass
class LoginLimiter:
    """At most `attempts` failed logins per name and per client address within `window_s`; a success clears
    the name's count."""

    attempts: int = 5
    window_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def allowed(self, name: str, address: str) -> bool:
        now = self.clock()
        return all(len(self._recent(key, now)) < self.attempts for key in (f"n:{name}", f"a:{address}"))

    def failed(self, name: str, address: str) -> None:
        now = self.clock()
        for key in (f"n:{name}", f"a:{address}"):
            self._failures[key] = [*self._recent(key, now), now]

    def succeeded(self, name: str) -> None:
        self._failures.pop(f"n:{name}", None)

    def _recent(self, key: str, now: float) -> list[float]:
        return [t for t in self._failures.get(key, ()) if now - t < self.window_s]
