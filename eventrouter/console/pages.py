"""The console's pages that read: login, logout and the bootstrap admin; Sources, Integrations, an
integration with its playbook editor and test panel, Revisions, the audit log. Each asks the pure modules
(screens, trial) what to show and renders it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from aiohttp import web

from eventrouter.console import audit as audit_log
from eventrouter.console import screens
from eventrouter.console.auth import KEYS, READ, ROLES, VIEWER, check_login
from eventrouter.console.delivery import DeliveryDetail, masked_detail
from eventrouter.console.pii import masked_event
from eventrouter.console.pulse import WINDOWS, spark
from eventrouter.console.replays import Job
from eventrouter.console.trial import SAMPLES, trial
from eventrouter.console.web import (
    CONSOLE,
    COOKIE,
    SESSION,
    Console,
    form_of,
    in_force,
    integration_in_force,
    needs,
    no_integration,
    render,
)
from schemas.errors import ConfigurationError, EventRouterError, RetryableError
from schemas.runtime.revisions import Revision

log = logging.getLogger(__name__)
WINDOW_NAMES = {"5m": "5 minutes", "1h": "hour", "1d": "day"}


# -- login -------------------------------------------------------------------------------------------
async def login_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    if not console.users():
        raise web.HTTPSeeOther("/bootstrap")
    return render(request, "login.html")


async def login(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    form = await form_of(request)
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
    form = await form_of(request)
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
async def home(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/sources")


@needs(READ)
async def sources_page(request: web.Request) -> web.StreamResponse:
    current = in_force(request.app[CONSOLE])
    rows = screens.sources(current[1]) if current else []
    return render(request, "sources.html", rows=rows, revision=current[0] if current else None)


@needs(READ)
async def integrations_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    if current is None:
        return render(request, "integrations.html", catalogue=[], integrations=[], revision=None)
    revision, config = current
    return render(request, "integrations.html", catalogue=screens.catalogue(config),
                  integrations=screens.integrations(revision, config, console.environ), revision=revision,
                  pipelines=[p.name for p in config.pipelines])


@needs(READ)
async def integration_page(request: web.Request) -> web.StreamResponse:
    current, name = integration_in_force(request), request.match_info["name"]
    if current is None:
        return no_integration(request)
    return integration_page_for(request, current, name)


@needs(READ)
async def try_playbook(request: web.Request) -> web.StreamResponse:
    """The test panel: the outcome and the request(s) for the playbook and event in the form; sends nothing."""
    console: Console = request.app[CONSOLE]
    current, name = integration_in_force(request), request.match_info["name"]
    if current is None:
        return no_integration(request)
    form = await form_of(request)
    sample = str(form.get("sample", ""))
    event = orjson.dumps(SAMPLES[sample], option=orjson.OPT_INDENT_2).decode() if sample in SAMPLES \
        else str(form.get("event", ""))
    text = str(form.get("playbook", ""))
    result = trial(current[0].document, name, text, event)
    changes = screens.playbook_changes(current[0].document, name, text)
    if request.headers.get("X-Fragment") == "trial":
        return render(request, "trial.html", result=result, changes=changes)
    view = screens.integration_view(current[0], current[1], name, console.environ)
    return render(request, "integration.html", view=view, revision=current[0], playbook=text, event=event,
                  samples=SAMPLES, result=result, changes=changes, connection=view.connection)


@needs(READ)
async def live_event(request: web.Request) -> web.StreamResponse:
    """The test panel on the newest event a pipeline sending to this integration received (from the end of
    the raw topic; personal data masked for a viewer); the playbook being edited is kept."""
    console: Console = request.app[CONSOLE]
    current, name = integration_in_force(request), request.match_info["name"]
    if current is None:
        return no_integration(request)
    form = await form_of(request)
    pipelines = [p for p in current[1].pipelines if name in p.integrations]
    keys = {key for p in pipelines for key in p.write_keys}
    try:
        found = await asyncio.to_thread(console.store.recent_events, keys, 1) if keys else []
    except RetryableError as exc:
        log.warning("console: no live event for %s: %s", name, exc)
        found, note = [], "The broker did not answer: try again in a moment."
    else:
        note = "" if found else (f"No recent event from {', '.join(p.name for p in pipelines) or 'any pipeline'} "
                                 "(none in the newest records of the raw topic).")
    event = None
    if found:
        shown = masked_event(found[0].event) if request[SESSION].role == VIEWER else found[0].event
        event = orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode()
        note = f"The newest event of {', '.join(p.name for p in pipelines)}, received {screens.when(found[0].at_ms)}" \
            + (" (personal data masked)." if request[SESSION].role == VIEWER else ".")
    return integration_page_for(request, current, name, playbook=str(form.get("playbook", "")) or None,
                                event=event, event_note=note)


def integration_page_for(request: web.Request, current: tuple[Revision, Any], name: str, *, status: int = 200,
                         playbook: str | None = None, problems: list[str] | None = None, message: str = "",
                         connection: str | None = None, event: str | None = None,
                         event_note: str = "") -> web.Response:
    console: Console = request.app[CONSOLE]
    revision, config = current
    view = screens.integration_view(revision, config, name, console.environ)
    event = orjson.dumps(SAMPLES["track"], option=orjson.OPT_INDENT_2).decode() if event is None else event
    text = view.playbook if playbook is None else playbook
    return render(request, "integration.html", status=status, view=view, revision=revision, playbook=text,
                  event=event, samples=SAMPLES, result=trial(revision.document, name, text, event),
                  changes=screens.playbook_changes(revision.document, name, text) if playbook is not None else "",
                  problems=problems or [], message=message, event_note=event_note,
                  connection=view.connection if connection is None else connection)


@needs(READ)
async def delivery_page(request: web.Request) -> web.StreamResponse:
    """An integration's recent requests and error classes, from its newest receipts."""
    console: Console = request.app[CONSOLE]
    current, name = integration_in_force(request), request.match_info["name"]
    if current is None or name not in {i.name for i in current[1].integrations}:
        return no_integration(request)
    masked = request[SESSION].role == VIEWER
    shown, problem = DeliveryDetail(name), ""
    if console.delivery is not None:
        try:
            shown = await asyncio.to_thread(console.delivery.detail, name)
        except RetryableError as exc:
            problem = f"The broker did not answer: {exc}"
    if masked:
        shown = masked_detail(shown)
    return render(request, "delivery.html", d=shown, problem=problem, masked=masked)


@needs(READ)
async def revisions_page(request: web.Request) -> web.StreamResponse:
    history = request.app[CONSOLE].store.history()
    return render(request, "revisions.html", rows=screens.revisions(history), diffs=screens.newest_diffs(history))


@needs(READ)
async def revision_page(request: web.Request) -> web.StreamResponse:
    """One revision: who applied it, when, from where, and its diff against the one before it."""
    history = request.app[CONSOLE].store.history()
    try:
        revision, before = screens.revision_and_before(history, int(request.match_info["number"]))
    except (ValueError, KeyError):
        return render(request, "error.html", status=404, message="No such revision.")
    return render(request, "revision.html", revision=revision, before=before,
                  current=revision.number == history[-1].number, diff=screens.revision_diff(before, revision))


@needs(READ)
async def audit_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    return render(request, "audit.html", rows=screens.audit_rows(console.store.history(), console.store.audit()))


@needs(KEYS)
async def users_page(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    return render(request, "users.html", users=sorted(console.users().values(), key=lambda u: u.name), roles=ROLES)


@needs(READ)
async def overview_page(request: web.Request) -> web.StreamResponse:
    """The pipeline over the last 5 minutes, hour or day from the processes' heartbeats (received, routed,
    filtered, delivered, dead-lettered, charts; which processes are alive), and as `eventrouter status`
    prints it from the broker's offsets (lag, retrying, dead letters); refreshed every 5 s."""
    console: Console = request.app[CONSOLE]
    name = request.query.get("window", "5m")
    name = name if name in WINDOWS else "5m"
    current = in_force(console)
    shown = None if console.heartbeats is None or current is None else console.heartbeats.window(
        name, [p.name for p in current[1].pipelines], [i.name for i in current[1].integrations])
    values: dict[str, Any] = {"window": name, "windows": WINDOW_NAMES, "shown": shown, "spark": spark}
    if console.status is None:
        return render(request, "overview.html", state=None, problem="Not connected to a broker.", **values)
    try:
        state = await asyncio.to_thread(console.status)
    except EventRouterError as exc:  # BrokerUnreachable says which address
        return render(request, "overview.html", state=None, problem=str(exc), **values)
    return render(request, "overview.html", state=state, problem="", **values)


@needs(READ)
async def dead_letters_page(request: web.Request) -> web.StreamResponse:
    """How many letters each integration's topic and the worker's hold (from the offsets)."""
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    if current is None or console.letters is None:
        return render(request, "deadletters.html", totals={})
    try:
        totals = await asyncio.to_thread(console.letters.totals, current[1])
    except RetryableError as exc:
        return render(request, "error.html", status=503, message=f"The broker did not answer: {exc}")
    return render(request, "deadletters.html", totals=totals)


@needs(READ)
async def dead_letters_of(request: web.Request) -> web.StreamResponse:
    return await letters_page_for(request)


async def letters_page_for(request: web.Request, report: list[str] | None = None,
                           followed: Job | None = None) -> web.StreamResponse:
    """One integration's (or the worker's) letters: counts by reason among the newest, the newest listed;
    `report`: what a re-injection just did; `followed`: the job following its delivery."""
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    where, reason = request.match_info["where"], request.query.get("reason", "")[:100]
    if current is None or console.letters is None:
        return render(request, "error.html", status=404, message="No dead letters here.")
    try:
        shown = await asyncio.to_thread(console.letters.page, current[1], where, reason)
    except ConfigurationError:
        return render(request, "error.html", status=404, message=f"No integration named {where!r}.")
    except RetryableError as exc:
        return render(request, "error.html", status=503, message=f"The broker did not answer: {exc}")
    return render(request, "letters.html", page=shown, reason=reason, report=report or [], followed=followed)


@needs(READ)
async def dead_letter(request: web.Request) -> web.StreamResponse:
    """One letter whole: the reason, the vendor's answer, the original (personal data masked for a viewer)."""
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    where = request.match_info["where"]
    try:
        partition, offset = int(request.match_info["partition"]), int(request.match_info["offset"])
        found = None if current is None or console.letters is None else await asyncio.to_thread(
            console.letters.one, current[1], where, partition, offset)
    except (ValueError, ConfigurationError):
        found = None
    except RetryableError as exc:
        return render(request, "error.html", status=503, message=f"The broker did not answer: {exc}")
    if found is None:
        return render(request, "error.html", status=404, message="No such dead letter.")
    shown = masked_event(found) if request[SESSION].role == VIEWER else found
    return render(request, "letter.html", where=where, letter=orjson.dumps(
        shown, option=orjson.OPT_INDENT_2, default=str).decode(), masked=request[SESSION].role == VIEWER)


async def not_found(request: web.Request) -> web.StreamResponse:
    return render(request, "error.html", status=404, message="No such page.")
