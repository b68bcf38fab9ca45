"""The console's users: a JSON file of names, roles and argon2id hashes (never a password), written
atomically, readable by its owner only. `eventrouter console user add NAME --role ROLE` writes it; with no
user in it, the console prints a one-time bootstrap token at start, with which the first admin is made in
the browser."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from eventrouter.console.auth import ADMIN, ROLES, User, hash_password
from schemas.errors import ConfigurationError

MIN_PASSWORD_CHARS = 12


def load_users(path: Path) -> dict[str, User]:
    """The users in `path`; none if it does not exist. A file that is not ours is a configuration error."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not a console users file ({type(exc).__name__})") from None
    users = {}
    for index, entry in enumerate(document.get("users", []) if isinstance(document, dict) else ()):
        try:
            user = User(str(entry["name"]), str(entry["role"]), str(entry["password_hash"]))
        except (KeyError, TypeError):
            raise ConfigurationError(f"{path}: users[{index}] needs name, role and password_hash") from None
        if user.role not in ROLES:
            raise ConfigurationError(f"{path}: users[{index}].role: one of {', '.join(ROLES)}")
        users[user.name] = user
    return users


def save_users(path: Path, users: dict[str, User]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    document = {"users": [{"name": u.name, "role": u.role, "password_hash": u.password_hash}
                          for u in sorted(users.values(), key=lambda u: u.name)]}
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=1)
    partial.replace(path)


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD_CHARS:
        return f"at least {MIN_PASSWORD_CHARS} characters"
    return None


def name_problem(name: str) -> str | None:
    if not (1 <= len(name) <= 64) or not all(c.isalnum() or c in "._-@" for c in name):
        return "1 to 64 letters, digits, '.', '_', '-' or '@'"
    return None


def add_user(path: Path, name: str, role: str, password: str) -> User:
    """Add or replace `name` with `role` and a hash of `password`; ConfigurationError says what is wrong."""
    for field, problem in (("name", name_problem(name)), ("password", password_problem(password)),
                           ("role", None if role in ROLES else f"one of {', '.join(ROLES)}")):
        if problem:
            raise ConfigurationError(f"{field}: {problem}")
    users = load_users(path)
    users[name] = user = User(name, role, hash_password(password))
    save_users(path, users)
    return user


def _admins(users: dict[str, User]) -> set[str]:
    return {u.name for u in users.values() if u.role == ADMIN}


def set_role(path: Path, name: str, role: str) -> User:
    """`name`'s new role; ConfigurationError for an unknown user or role, or the last admin demoted."""
    users = load_users(path)
    if name not in users:
        raise ConfigurationError(f"name: no user named {name!r}")
    if role not in ROLES:
        raise ConfigurationError(f"role: one of {', '.join(ROLES)}")
    if role != ADMIN and _admins(users) == {name}:
        raise ConfigurationError(f"role: {name} is the last admin; make another admin first")
    users[name] = user = User(name, role, users[name].password_hash)
    save_users(path, users)
    return user


def remove_user(path: Path, name: str) -> None:
    """ConfigurationError for an unknown user or the last admin."""
    users = load_users(path)
    if name not in users:
        raise ConfigurationError(f"name: no user named {name!r}")
    if _admins(users) == {name}:
        raise ConfigurationError(f"name: {name} is the last admin; make another admin first")
    del users[name]
    save_users(path, users)


class Bootstrap:
    """The one-time token that makes the first admin when there is no user; used once, then gone."""

    def __init__(self) -> None:
        self.token: str | None = secrets.token_urlsafe(24)

    def redeem(self, token: str, path: Path, name: str, password: str) -> User:
        if self.token is None or not secrets.compare_digest(token.encode(), self.token.encode()):
            raise ConfigurationError("token: not the bootstrap token this console printed")
        if load_users(path):
            self.token = None
            raise ConfigurationError("token: a user exists already; log in")
        user = add_user(path, name, ADMIN, password)
        self.token = None
        return user
