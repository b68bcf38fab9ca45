"""The console's HTTP plumbing (aiohttp): sessions, roles and CSRF on every request, security headers on
every answer, no traceback to a browser, and Jinja2 rendering. The handlers are in pages.py (reading) and
edits.py (changes), the routes in app.py; they read a form, call the pure modules (screens, trial,
changes, auth, users) and render. Every page works without JavaScript (forms post normally); htmx only makes the test
panel answer as one types and CodeMirror edits the playbook, both served from static/vendor/ (docs/console.md, Front-end
assets). No inline script or style: the Content-Security-Policy forbids them."""

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

from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from eventrouter.console import screens
from eventrouter.console.auth import EDIT, KEYS, LoginLimiter, Session, Sessions, User, can
from eventrouter.console.delivery import Delivery
from eventrouter.console.letters import Letters
from eventrouter.console.replays import Replays
from eventrouter.console.store import Heartbeats, Store
from eventrouter.console.tail import LiveHub
from eventrouter.console.users import Bootstrap, load_users
from eventrouter.status import Status
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
    configs: dict[int, Any] = field(default_factory=dict)  # revision number -> its Config (False: invalid here)
    letters: Letters | None = None  # the dead letters (None: not on a broker, as in the handler tests)
    status: Callable[[], Status] | None = None  # the pipeline's state from the broker (`eventrouter status`)
    hub: LiveHub | None = None  # the live views' feed (None: not on a broker)
    delivery: Delivery | None = None  # the integrations' receipts (None: not on a broker)
    replays: Replays | None = None  # replays started in this console (None: not on a broker)
    heartbeats: Heartbeats | None = None  # the processes' heartbeats (None: not on a broker)

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
def security_headers(response: web.StreamResponse, path: str) -> None:
    """Every answer's; a handler that streams sets them before it starts."""
    response.headers.update({"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
                             "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                             "Cross-Origin-Opener-Policy": "same-origin"})
    if not path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        security_headers(response, request.path)
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
            form = await form_of(request)
            token = str(form.get("csrf", ""))
        if not console.sessions.csrf_ok(session, token):
            return render(request, "error.html", status=403, message="This form is out of date or was not sent "
                          "by this console (CSRF token missing or wrong). Reload the page and try again.")
    return await handler(request)


def _same_origin(request: web.Request) -> bool:
    """A browser names the page a POST comes from (Origin); one from another site is refused, logins too."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


async def form_of(request: web.Request) -> Mapping[str, Any]:
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


def in_force(console: Console) -> tuple[Revision, Any] | None:
    """The newest revision valid under this version, with its config (validated once per revision)."""
    for revision in reversed(console.store.history()):
        config = console.configs.get(revision.number)
        if config is None:
            try:
                config = revision.config()
            except ConfigurationError:
                config = False
            console.configs = {**dict(list(console.configs.items())[-20:]), revision.number: config}
        if config is not False:
            return revision, config
    return None


def integration_in_force(request: web.Request) -> tuple[Revision, Any] | None:
    """The revision in force and its config, if it has the integration the URL names."""
    current = in_force(request.app[CONSOLE])
    name = request.match_info["name"]
    return current if current is not None and name in {i.name for i in current[1].integrations} else None


def no_integration(request: web.Request) -> web.Response:
    return render(request, "error.html", status=404, message=f"No integration named {request.match_info['name']!r}.")


__all__ = ["CONSOLE", "COOKIE", "CSP", "MAX_FORM_BYTES", "SESSION", "Console", "errors", "form_of",
           "guard", "headers", "in_force", "integration_in_force", "needs", "no_integration", "render"]
