"""The console's decisions without a network: roles, password hashes, signed sessions that expire and can
be revoked, CSRF tokens bound to a session, the login limiter, the users file and its bootstrap token."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from eventrouter.console.auth import (
    ADMIN,
    EDIT,
    EDITOR,
    KEYS,
    READ,
    VIEWER,
    LoginLimiter,
    Sessions,
    User,
    can,
    check_login,
    hash_password,
)
from eventrouter.console.users import Bootstrap, add_user, load_users
from schemas.errors import ConfigurationError


def test_each_role_may_do_what_the_ones_below_it_may_and_no_more() -> None:
    assert [can(VIEWER, a) for a in (READ, EDIT, KEYS)] == [True, False, False]
    assert [can(EDITOR, a) for a in (READ, EDIT, KEYS)] == [True, True, False]
    assert [can(ADMIN, a) for a in (READ, EDIT, KEYS)] == [True, True, True]
    assert not can("root", READ)


def test_a_password_is_kept_as_an_argon2id_hash_and_checked_against_it() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$") and "correct" not in stored
    users = {"ana": User("ana", EDITOR, stored)}
    assert check_login(users, "ana", "correct horse battery") == users["ana"]
    assert check_login(users, "ana", "wrong") is None
    assert check_login(users, "nobody", "correct horse battery") is None


def test_a_session_is_signed_expires_and_is_revoked_at_logout() -> None:
    now = [1_000_000.0]
    sessions = Sessions(b"k" * 32, clock=lambda: now[0])
    value = sessions.issue(User("ana", EDITOR, "h"), lifetime_s=60)
    session = sessions.check(value)
    assert session is not None and (session.name, session.role) == ("ana", EDITOR)
    assert sessions.check(value.replace("|editor|", "|admin|")) is None  # a role cannot be raised
    assert Sessions(b"x" * 32, clock=lambda: now[0]).check(value) is None  # another key
    assert sessions.check("garbage") is None and sessions.check(None) is None
    now[0] += 61
    assert sessions.check(value) is None  # expired
    now[0] -= 61
    sessions.revoke(session)
    assert sessions.check(value) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    sessions = Sessions(b"k" * 32)
    one = sessions.check(sessions.issue(User("ana", EDITOR, "h")))
    two = sessions.check(sessions.issue(User("ana", EDITOR, "h")))
    assert one is not None and two is not None
    assert sessions.csrf_ok(one, sessions.csrf(one))
    assert not sessions.csrf_ok(one, sessions.csrf(two)) and not sessions.csrf_ok(one, None)


def test_logins_are_limited_per_name_and_per_address() -> None:
    now = [0.0]
    limiter = LoginLimiter(attempts=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.allowed("ana", "10.0.0.1")
        limiter.failed("ana", "10.0.0.1")
    assert not limiter.allowed("ana", "10.0.0.2")  # the name is locked from anywhere
    assert not limiter.allowed("bob", "10.0.0.1")  # and the address for any name
    now[0] += 61
    assert limiter.allowed("ana", "10.0.0.1")


def test_the_users_file_holds_hashes_only_and_is_the_owners(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    add_user(path, "ana", EDITOR, "a long enough password")
    text = path.read_text()
    assert "a long enough password" not in text and json.loads(text)["users"][0]["name"] == "ana"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_users(path)["ana"].role == EDITOR
    for name, role, password, field in (("ana", EDITOR, "short", "password"), ("a b", EDITOR, "x" * 12, "name"),
                                        ("ana", "root", "x" * 12, "role")):
        with pytest.raises(ConfigurationError, match=f"^{field}: "):
            add_user(path, name, role, password)


def test_the_bootstrap_token_makes_one_admin_once(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    bootstrap = Bootstrap()
    token = bootstrap.token
    assert token is not None
    with pytest.raises(ConfigurationError, match="not the bootstrap token"):
        bootstrap.redeem("guess", path, "ana", "x" * 12)
    user = bootstrap.redeem(token, path, "ana", "a long enough password")
    assert user.role == ADMIN and load_users(path)["ana"].role == ADMIN
    with pytest.raises(ConfigurationError):
        bootstrap.redeem(token, path, "eve", "another long password")
    assert set(load_users(path)) == {"ana"}
