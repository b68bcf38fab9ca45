"""The console's changes: each validated whole (schemas/config.py) and published as a new revision applied
by the session's user, by the same path as `config apply`: a playbook saved, an integration added from
the catalogue, enabled, disabled, removed or given a new connection; a pipeline made, a writeKey made
(shown once) or revoked, a pipeline enabled or disabled; a rollback. And the console's users: made, given
a role, removed (the users file; each change in the audit log)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from eventrouter.console import audit as audit_log
from eventrouter.console import changes, screens
from eventrouter.console.auth import EDIT, KEYS, ROLES, Session
from eventrouter.console.pages import integration_page_for, letters_page_for
from eventrouter.console.trial import problem_lines
from eventrouter.console.users import add_user, load_users, remove_user, set_role
from eventrouter.console.web import (
    CONSOLE,
    SESSION,
    Console,
    form_of,
    in_force,
    integration_in_force,
    needs,
    no_integration,
    render,
)
from schemas.config import config_from_document
from schemas.errors import ConfigurationError, RetryableError
from schemas.runtime.revisions import Revision

log = logging.getLogger(__name__)
MAX_PICKED = 500  # letters one re-injection may name one by one


def _checked(document: Mapping[str, Any]) -> list[str]:
    try:
        config_from_document(document, "config")
    except ConfigurationError as exc:
        return problem_lines(exc)
    return []


def _publish(request: web.Request, document: Mapping[str, Any], what: str) -> Revision:
    """A change as a new revision, applied by the session's user; `what` says what it is for."""
    console: Console = request.app[CONSOLE]
    session: Session = request[SESSION]
    revision = console.store.publish(document, f"console: {what}", session.name)
    log.info("console: %s saved revision %s (%s)", session.name, revision.number, what.split(":", 1)[0])
    return revision


def _change_message(form: Mapping[str, Any]) -> tuple[str, list[str]]:
    message = " ".join(str(form.get("message", "")).split())[:200]
    return message, [] if message else ["message: say what the change is for"]


@needs(EDIT)
async def save_playbook(request: web.Request) -> web.StreamResponse:
    """Save as a new revision, by the same path as `config apply` (validated whole, then published)."""
    current, name = integration_in_force(request), request.match_info["name"]
    if current is None:
        return no_integration(request)
    form = await form_of(request)
    text = str(form.get("playbook", ""))
    message, problems = _change_message(form)
    try:
        document = changes.set_playbook(current[0].document, name, text)
        problems += _checked(document)
    except ConfigurationError as exc:
        problems += problem_lines(exc)
    if problems:
        return integration_page_for(request, current, name, status=400, playbook=text, problems=problems,
                                 message=message)
    revision = _publish(request, document, f"{name}: {message}")
    raise web.HTTPSeeOther(f"/revisions#r{revision.number}")


@needs(EDIT)
async def change_integration(request: web.Request) -> web.StreamResponse:
    """Enable, disable or remove an integration, or replace its connection or its consent and delivery
    settings: each a new revision."""
    current, name, change = integration_in_force(request), request.match_info["name"], request.match_info["change"]
    if current is None:
        return no_integration(request)
    form = await form_of(request)
    document = current[0].document
    try:
        if change == "connection":
            text = str(form.get("connection", ""))
            new, what = changes.set_connection(document, name, text), f"{name}: connection changed"
        elif change == "policy":
            new = changes.set_policy(document, name, str(form.get("consent", ""))[:100],
                                     form.get("consent_required") == "on", str(form.get("delivery", "")))
            what = f"{name}: consent and delivery settings changed"
        elif change in ("enable", "disable"):
            new = changes.set_enabled(document, "integration", name, change == "enable")
            what = f"{name}: {change}d"
        elif change == "remove":
            new, what = changes.remove_integration(document, name), f"{name}: removed"
        else:
            return render(request, "error.html", status=404, message="No such change.")
        problems = _checked(new)
    except ConfigurationError as exc:
        problems = problem_lines(exc)
    if problems:  # the refused text is not echoed back: it may hold a literal secret
        return integration_page_for(request, current, name, status=400, problems=problems)
    revision = _publish(request, new, what)
    raise web.HTTPSeeOther("/integrations" if change == "remove" else f"/integrations/{name}?saved={revision.number}")


@needs(EDIT)
async def add_integration(request: web.Request) -> web.StreamResponse:
    """An integration from the catalogue, with its starter kit and a connection of `${ENV}` references."""
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    if current is None:
        return render(request, "error.html", status=409, message="Apply a first config before adding to it.")
    form = await form_of(request)
    name, kind = str(form.get("name", "")).strip(), str(form.get("kind", ""))
    pipelines = [str(p) for p in form.getall("pipeline", [])] if hasattr(form, "getall") else []
    try:
        new = changes.add_integration(current[0].document, name, kind, pipelines)
        problems = _checked(new)
    except ConfigurationError as exc:
        problems = problem_lines(exc)
    if problems:
        revision, config = current
        return render(request, "integrations.html", status=400, catalogue=screens.catalogue(config),
                      integrations=screens.integrations(revision, config, console.environ), revision=revision,
                      pipelines=[p.name for p in config.pipelines], problems=problems, kind=kind, name=name)
    _publish(request, new, f"{name}: added ({kind}, from its starter kit)")
    raise web.HTTPSeeOther(f"/integrations/{name}")


@needs(KEYS)
async def change_source(request: web.Request) -> web.StreamResponse:
    """A pipeline made, a writeKey made or revoked, a pipeline enabled or disabled: each a new revision. A new
    key is shown once, on the page this answers with."""
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    if current is None:
        return render(request, "error.html", status=409, message="Apply a first config before adding to it.")
    form = await form_of(request)
    change = request.match_info["change"]
    document, name = current[0].document, str(form.get("pipeline", "")).strip()
    key = None
    try:
        if change == "create":
            new, key = changes.add_pipeline(document, name)
            what = f"pipeline {name}: made, with a new writeKey"
        elif change == "key":
            new, key = changes.add_write_key(document, name)
            what = f"pipeline {name}: a new writeKey ({screens.cut_key(key)})"
        elif change == "revoke":
            new, revoked = changes.revoke_write_key(document, name, int(str(form.get("index", "-1"))))
            what = f"pipeline {name}: writeKey {screens.cut_key(revoked)} revoked"
        elif change in ("enable", "disable"):
            new = changes.set_enabled(document, "pipeline", name, change == "enable")
            what = f"pipeline {name}: {change}d"
        else:
            return render(request, "error.html", status=404, message="No such change.")
        problems = _checked(new)
    except (ConfigurationError, ValueError) as exc:
        problems = problem_lines(exc) if isinstance(exc, ConfigurationError) else ["index: not a number"]
    if problems:
        return render(request, "sources.html", status=400, rows=screens.sources(current[1]), revision=current[0],
                      problems=problems)
    revision = _publish(request, new, what)
    _, config = in_force(console) or current
    return render(request, "sources.html", rows=screens.sources(config), revision=revision, new_key=key,
                  new_key_pipeline=name)


@needs(EDIT)
async def rollback(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    session: Session = request[SESSION]
    try:
        number = int(request.match_info["number"])
        revision = console.store.rollback(number, session.name)
    except (ValueError, KeyError):
        return render(request, "error.html", status=404, message="No such revision.")
    except ConfigurationError as exc:
        return render(request, "error.html", status=400, message=f"Revision {request.match_info['number']} is "
                      f"not valid under this version: {str(exc).splitlines()[0]}")
    log.info("console: %s rolled back to revision %s as revision %s", session.name, number, revision.number)
    raise web.HTTPSeeOther(f"/revisions#r{revision.number}")


@needs(KEYS)
async def change_user(request: web.Request) -> web.StreamResponse:
    """A user made (or given a new password), given a role, or removed; each in the audit log. The last admin
    cannot be removed or demoted. A password is never echoed, logged or audited."""
    console: Console = request.app[CONSOLE]
    session: Session = request[SESSION]
    form = await form_of(request)
    change, name = request.match_info["change"], str(form.get("name", "")).strip()[:64]
    role = str(form.get("role", ""))
    try:
        if change == "add":
            existed = name in load_users(console.users_path)
            add_user(console.users_path, name, role, str(form.get("password", "")))
            what = f"{'given a new password and the role' if existed else 'made, role'} {role}"
        elif change == "role":
            set_role(console.users_path, name, role)
            what = f"role set to {role}"
        elif change == "remove":
            remove_user(console.users_path, name)
            what = "removed"
        else:
            return render(request, "error.html", status=404, message="No such change.")
    except ConfigurationError as exc:
        users = sorted(console.users().values(), key=lambda u: u.name)
        return render(request, "users.html", status=400, users=users, roles=ROLES, problems=[str(exc)],
                      name=name)
    console.store.append(audit_log.record(session.name, audit_log.USER, f"user {name}", f"{name}: {what}"))
    log.info("console: %s changed user %s (%s)", session.name, name, change)
    raise web.HTTPSeeOther("/users")


@needs(KEYS)
async def send_letters_again(request: web.Request) -> web.StreamResponse:
    """Re-inject an integration's (or the worker's) letters of a reason, or all: a dry run says how many would
    go and how many were delivered meanwhile; the real one is in the audit log."""
    console: Console = request.app[CONSOLE]
    session: Session = request[SESSION]
    current = in_force(console)
    if current is None or console.letters is None:
        return render(request, "error.html", status=404, message="No dead letters here.")
    form = await form_of(request)
    where, reason = request.match_info["where"], str(form.get("reason", ""))[:100]
    dry_run = form.get("dry_run") is not None
    picked = picks(form.getall("pick", []) if isinstance(form, MultiMapping) else [])
    try:
        since = await asyncio.to_thread(console.replays.receipts_end) if console.replays and not dry_run else {}
        lines, sent = await asyncio.to_thread(functools.partial(
            console.letters.send_again, current[1], current[0].number, where, reason, dry_run=dry_run, picked=picked))
    except ConfigurationError:
        return render(request, "error.html", status=404, message=f"No integration named {where!r}.")
    except RetryableError as exc:
        return render(request, "error.html", status=503, message=f"The broker did not answer: nothing was "
                      f"re-injected ({exc}).")
    chosen = f"{where}'s dead letters" + (f" of reason {reason}" if reason else "") + \
        (f" ({len(picked)} picked)" if picked else "")
    if not dry_run:
        console.store.append(audit_log.record(session.name, audit_log.REINJECT, f"dead letters of {where}",
                                              f"{chosen} re-injected under revision {current[0].number}: "
                                              + "; ".join(lines)))
        log.info("console: %s re-injected %s (%s)", session.name, chosen, "; ".join(lines))
    header = f"{'Dry run (nothing written)' if dry_run else 'Re-injected'}: {chosen}"
    followed = console.replays.follow(sent, session.name, f"re-injection of {chosen}", since) \
        if sent and console.replays else None
    return await letters_page_for(request, [header, *lines], followed=followed)


def picks(values: list[Any]) -> list[tuple[int, int]]:
    """The letters ticked on the page, `partition:offset` each (at most MAX_PICKED; others ignored)."""
    out = []
    for value in values[:MAX_PICKED]:
        partition, _, offset = str(value).partition(":")
        if partition.isdigit() and offset.isdigit():
            out.append((int(partition), int(offset)))
    return out
