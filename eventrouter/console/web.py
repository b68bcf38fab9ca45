"""The console's HTTP side (aiohttp): sessions, roles and CSRF on every request, security headers on every
answer, and handlers that read a form, call the pure modules (screens, trial, auth, users) and render a
Jinja2 template. Every page works without JavaScript (forms post normally); console.js only makes the
test panel answer as one types. No inline script or style: the Content-Security-Policy forbids them."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from eventrouter.console import audit as audit_log
from eventrouter.console import changes, screens
from eventrouter.console.auth import EDIT, KEYS, READ, LoginLimiter, Session, Sessions, User, can, check_login
from eventrouter.console.store import Store
from eventrouter.console.trial import SAMPLES, problem_lines, trial
from eventrouter.console.users import Bootstrap, load_users
from schemas.config import config_from_document
from schemas.errors import ConfigurationError
from schemas.runtime.revisions import Revision

log = logging.getLogger(__name__)
COOKIE = "eventrouter_session"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
MAX_FORM_BYTES = 512 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC = ("/login", "/bootstrap", "/static/")


@dataclass
class Console:
    store: Store
    users_path: Path
    sessions: Sessions
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    bootstrap: Bootstrap | None = None
    secure_cookies: bool = False
    limiter: LoginLimiter = field(default_factory=LoginLimiter)

    def users(self) -> dict[str, User]:
        return load_users(self.users_path)


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("session", Session)
FORM: web.RequestKey[Mapping[str, Any]] = web.RequestKey("form")

_templates = Environment(loader=PackageLoader("eventrouter.console", "templates"),
                         autoescape=select_autoescape(default=True, default_for_string=True))
_templates.filters["when"] = screens.when


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    session: Session | None = request.get(SESSION)
    console: Console = request.app[CONSOLE]
    text = _templates.get_template(template).render(
        session=session, csrf=console.sessions.csrf(session) if session else "", path=request.path,
        can_edit=bool(session and can(session.role, EDIT)), can_keys=bool(session and can(session.role, KEYS)),
        **values)
    return web.Response(text=text, status=status, content_type="text/html")


# -- middlewares -------------------------------------------------------------------------------------
@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.update({"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                             "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                             "Cross-Origin-Opener-Policy": "same-origin"})
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No traceback reaches a browser: an unexpected error is logged with an id the page shows."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return render(request, "error.html", status=413, message=f"The form is over {MAX_FORM_BYTES // 1024} KB: "
                      "nothing was saved.")
    except web.HTTPException:
        raise
    except Exception:  # logged with its id; the page says only that id
        reference = secrets.token_hex(4)
        log.exception("console: %s %s failed (error id %s)", request.method, request.path, reference)
        return render(request, "error.html", status=500, message=f"Something went wrong on our side (error id "
                      f"{reference}, in the console's log).")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A session for every page but the public ones; the CSRF token on every state-changing request."""
    console: Console = request.app[CONSOLE]
    if request.method not in ("GET", "HEAD") and not _same_origin(request):
        return render(request, "error.html", status=403, message="This request came from another site.")
    session = console.sessions.check(request.cookies.get(COOKIE))
    user = console.users().get(session.name) if session is not None else None
    if session is not None and user is not None:  # a user removed since is out; a role changed applies now
        request[SESSION] = session = dataclasses.replace(session, role=user.role)
    else:
        session = None
    if request.path.startswith(PUBLIC):
        if request.method == "POST" and session is not None and request.path == "/login":
            raise web.HTTPSeeOther("/")
        return await handler(request)
    if session is None:
        if request.method == "GET":
            raise web.HTTPSeeOther("/login")
        raise web.HTTPUnauthorized(text="log in first")
    if request.method not in ("GET", "HEAD"):
        token = request.headers.get("X-CSRF-Token")
        if token is None:
            form = await _form(request)
            token = str(form.get("csrf", ""))
        if not console.sessions.csrf_ok(session, token):
            return render(request, "error.html", status=403, message="This form is out of date or was not sent "
                          "by this console (CSRF token missing or wrong). Reload the page and try again.")
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a POST comes from (Origin); one from another site is refused, logins too."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def _form(request: web.Request) -> Mapping[str, Any]:
    if FORM not in request:
        request[FORM] = await request.post()
    form: Mapping[str, Any] = request[FORM]
    return form


def needs(action: str) -> Callable[[Handler], Handler]:
    """The role check, on the server, whatever the page showed."""
    def wrap(handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            session: Session = request[SESSION]
            if not can(session.role, action):
                return render(request, "error.html", status=403,
                              message=f"Your role ({session.role}) cannot do this.")
            return await handler(request)
        return checked
    return wrap


# -- login -------------------------------------------------------------------------------------------
async def login_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    if not console.users():
        raise web.HTTPSeeOther("/bootstrap")
    return render(request, "login.html")


async def login(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    form = await _form(request)
    name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:1024]
    address = request.remote or "?"
    if not console.limiter.allowed(name, address):
        log.warning("console: login refused for %s from %s: too many attempts", name, address)
        return render(request, "login.html", status=429, problem="Too many attempts: wait a few minutes.",
                      name=name)
    user = check_login(console.users(), name, password)
    if user is None:
        console.limiter.failed(name, address)
        log.info("console: failed login for %s from %s", name, address)
        return render(request, "login.html", status=401, problem="Name or password is wrong.", name=name)
    console.limiter.succeeded(name)
    log.info("console: %s (%s) logged in from %s", user.name, user.role, address)
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, console.sessions.issue(user), httponly=True, samesite="Strict",
                        secure=console.secure_cookies or request.secure, path="/")
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    console.sessions.revoke(request[SESSION])
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def bootstrap_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    if console.users() or console.bootstrap is None or console.bootstrap.token is None:
        raise web.HTTPSeeOther("/login")
    return render(request, "bootstrap.html")


async def bootstrap(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    form = await _form(request)
    name = str(form.get("name", ""))[:64]
    if console.bootstrap is None:
        raise web.HTTPSeeOther("/login")
    try:
        user = console.bootstrap.redeem(str(form.get("token", "")), console.users_path, name,
                                        str(form.get("password", "")))
    except ConfigurationError as exc:
        return render(request, "bootstrap.html", status=400, problem=str(exc), name=name)
    console.store.append(audit_log.record(user.name, audit_log.USER, f"user {user.name}",
                                          f"{user.name} made the first admin with the bootstrap token"))
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, console.sessions.issue(user), httponly=True, samesite="Strict",
                        secure=console.secure_cookies or request.secure, path="/")
    raise response


# -- screens -----------------------------------------------------------------------------------------
def _current(console: Console) -> tuple[Revision, Any] | None:
    history = console.store.history()
    for revision in reversed(history):
        try:
            return revision, revision.config()
        except ConfigurationError:
            continue
    return None


async def home(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/sources")


@needs(READ)
async def sources_page(request: web.Request) -> web.StreamResponse:
    current = _current(request.app[CONSOLE])
    rows = screens.sources(current[1]) if current else []
    return render(request, "sources.html", rows=rows, revision=current[0] if current else None)


@needs(READ)
async def integrations_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    current = _current(console)
    if current is None:
        return render(request, "integrations.html", catalogue=[], integrations=[], revision=None)
    revision, config = current
    return render(request, "integrations.html", catalogue=screens.catalogue(config),
                  integrations=screens.integrations(revision, config, console.environ), revision=revision,
                  pipelines=[p.name for p in config.pipelines])


@needs(READ)
async def integration_page(request: web.Request) -> web.StreamResponse:
    current = _current(request.app[CONSOLE])
    name = request.match_info["name"]
    if current is None or name not in {i.name for i in current[1].integrations}:
        return render(request, "error.html", status=404, message=f"No integration named {name!r}.")
    return _integration_page(request, current, name)


@needs(READ)
async def try_playbook(request: web.Request) -> web.StreamResponse:
    """The test panel: the outcome and the request(s) for the playbook and event in the form; sends nothing."""
    console: Console = request.app[CONSOLE]
    current = _current(console)
    name = request.match_info["name"]
    if current is None or name not in {i.name for i in current[1].integrations}:
        return render(request, "error.html", status=404, message=f"No integration named {name!r}.")
    form = await _form(request)
    sample = str(form.get("sample", ""))
    event = orjson.dumps(SAMPLES[sample], option=orjson.OPT_INDENT_2).decode() if sample in SAMPLES \
        else str(form.get("event", ""))
    result = trial(current[0].document, name, str(form.get("playbook", "")), event)
    if request.headers.get("X-Fragment") == "trial":
        return render(request, "trial.html", result=result)
    view = screens.integration_view(current[0], current[1], name, console.environ)
    return render(request, "integration.html", view=view, revision=current[0], playbook=str(form.get("playbook", "")),
                  event=event, samples=SAMPLES, result=result, connection=view.connection)


def _integration_page(request: web.Request, current: tuple[Revision, Any], name: str, *, status: int = 200,
                      playbook: str | None = None, problems: list[str] | None = None, message: str = "",
                      connection: str | None = None) -> web.Response:
    console: Console = request.app[CONSOLE]
    revision, config = current
    view = screens.integration_view(revision, config, name, console.environ)
    sample = orjson.dumps(SAMPLES["track"], option=orjson.OPT_INDENT_2).decode()
    text = view.playbook if playbook is None else playbook
    return render(request, "integration.html", status=status, view=view, revision=revision, playbook=text,
                  event=sample, samples=SAMPLES, result=trial(revision.document, name, text, sample),
                  problems=problems or [], message=message,
                  connection=view.connection if connection is None else connection)


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
    current = _current(request.app[CONSOLE])
    name = request.match_info["name"]
    if current is None or name not in {i.name for i in current[1].integrations}:
        return render(request, "error.html", status=404, message=f"No integration named {name!r}.")
    form = await _form(request)
    text = str(form.get("playbook", ""))
    message, problems = _change_message(form)
    try:
        document = changes.set_playbook(current[0].document, name, text)
        problems += _checked(document)
    except ConfigurationError as exc:
        problems += problem_lines(exc)
    if problems:
        return _integration_page(request, current, name, status=400, playbook=text, problems=problems,
                                 message=message)
    revision = _publish(request, document, f"{name}: {message}")
    raise web.HTTPSeeOther(f"/revisions#r{revision.number}")


@needs(EDIT)
async def change_integration(request: web.Request) -> web.StreamResponse:
    """Enable, disable or remove an integration, or replace its connection: each a new revision."""
    current = _current(request.app[CONSOLE])
    name, change = request.match_info["name"], request.match_info["change"]
    if current is None or name not in {i.name for i in current[1].integrations}:
        return render(request, "error.html", status=404, message=f"No integration named {name!r}.")
    form = await _form(request)
    document = current[0].document
    try:
        if change == "connection":
            text = str(form.get("connection", ""))
            new, what = changes.set_connection(document, name, text), f"{name}: connection changed"
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
        return _integration_page(request, current, name, status=400, problems=problems)
    revision = _publish(request, new, what)
    raise web.HTTPSeeOther("/integrations" if change == "remove" else f"/integrations/{name}?saved={revision.number}")


@needs(EDIT)
async def add_integration(request: web.Request) -> web.StreamResponse:
    """An integration from the catalogue, with its starter kit and a connection of `${ENV}` references."""
    console: Console = request.app[CONSOLE]
    current = _current(console)
    if current is None:
        return render(request, "error.html", status=409, message="Apply a first config before adding to it.")
    form = await _form(request)
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
    current = _current(console)
    if current is None:
        return render(request, "error.html", status=409, message="Apply a first config before adding to it.")
    form = await _form(request)
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
    _, config = _current(console) or current
    return render(request, "sources.html", rows=screens.sources(config), revision=revision, new_key=key,
                  new_key_pipeline=name)


@needs(READ)
async def revisions_page(request: web.Request) -> web.StreamResponse:
    history = request.app[CONSOLE].store.history()
    diffs = {r.number: screens.document_diff(history[i - 1].document if i else None, r.document,
                                             f"revision {history[i - 1].number}" if i else "(none)",
                                             f"revision {r.number}") for i, r in enumerate(history)}
    return render(request, "revisions.html", rows=screens.revisions(history), diffs=diffs)


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


@needs(READ)
async def audit_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    return render(request, "audit.html", rows=screens.audit_rows(console.store.history(), console.store.audit()))


async def not_found(request: web.Request) -> web.StreamResponse:
    return render(request, "error.html", status=404, message="No such page.")


def make_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[headers, errors, guard], client_max_size=MAX_FORM_BYTES)
    app[CONSOLE] = console
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/bootstrap", bootstrap_page)
    app.router.add_post("/bootstrap", bootstrap)
    app.router.add_get("/", home)
    app.router.add_get("/sources", sources_page)
    app.router.add_get("/integrations", integrations_page)
    app.router.add_get("/integrations/{name}", integration_page)
    app.router.add_post("/integrations/{name}/try", try_playbook)
    app.router.add_post("/integrations", add_integration)
    app.router.add_post("/integrations/{name}/playbook", save_playbook)
    app.router.add_post("/integrations/{name}/{change}", change_integration)
    app.router.add_post("/sources/{change}", change_source)
    app.router.add_get("/revisions", revisions_page)
    app.router.add_post("/revisions/{number}/rollback", rollback)
    app.router.add_get("/audit", audit_page)
    app.router.add_static("/static/", Path(__file__).parent / "static", append_version=False)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


__all__ = ["COOKIE", "CSP", "Console", "make_app"]
