"""The console's Replay screen: an integration's events of a window sent again (eventrouter/console/replays.py
does it), with a dry run first, progress followed live and a cancel; each start and cancel in the audit log.
Admins only, as re-injection is: both change what vendors receive."""

from __future__ import annotations

import asyncio
import functools
import logging

from aiohttp import web

from eventrouter.console import audit as audit_log
from eventrouter.console.auth import KEYS, READ, Session
from eventrouter.console.replays import DEFAULT_RATE, Window, window_of
from eventrouter.console.web import CONSOLE, SESSION, Console, form_of, in_force, needs, render
from schemas.errors import ConfigurationError, RetryableError

log = logging.getLogger(__name__)


def _page(request: web.Request, *, status: int = 200, window: Window | None = None, form: dict[str, str] | None = None,
          dry_run: list[str] | None = None, problem: str = "") -> web.Response:
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    names = [i.name for i in current[1].integrations] if current else []
    return render(request, "replay.html", status=status, names=names, jobs=console.replays.jobs() if console.replays
                  else [], form=form or {"rate": f"{DEFAULT_RATE:g}", "since": "1h"}, window=window,
                  dry_run=dry_run or [], problem=problem)


@needs(READ)
async def replay_page(request: web.Request) -> web.StreamResponse:
    return _page(request, form={"integration": request.query.get("integration", ""), "rate": f"{DEFAULT_RATE:g}",
                                "since": "1h"})


@needs(KEYS)
async def replay(request: web.Request) -> web.StreamResponse:
    """A dry run (counts, writes nothing) or the replay itself (audited; its progress page follows)."""
    console: Console = request.app[CONSOLE]
    session: Session = request[SESSION]
    current = in_force(console)
    form = {k: str(v)[:64] for k, v in (await form_of(request)).items() if k != "csrf"}
    if current is None or console.replays is None:
        return _page(request, status=409, form=form, problem="No config in force, or no broker: nothing to replay.")
    try:
        window = window_of(form, {i.name for i in current[1].integrations})
        if form.get("dry_run") is not None:
            lines = await asyncio.to_thread(console.replays.plan, current[1], window)
            return _page(request, form=form, window=window, dry_run=lines)
        job = await asyncio.to_thread(functools.partial(console.replays.start, current[1], window, session.name))
    except ConfigurationError as exc:
        return _page(request, status=400, form=form, problem=str(exc))
    except RetryableError as exc:
        return _page(request, status=503, form=form,
                     problem=f"The broker did not answer: nothing was replayed ({exc}).")
    console.store.append(audit_log.record(session.name, audit_log.REPLAY, f"replay of {window.integration}",
                                          f"replay {job.id} started: {window.describe()}, {job.total} events"))
    raise web.HTTPSeeOther(f"/replay/{job.id}")


@needs(READ)
async def replay_job(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    job = console.replays.job(request.match_info["id"]) if console.replays else None
    if job is None:
        return render(request, "error.html", status=404, message="No such replay in this console.")
    return render(request, "replay_job.html", job=job)


@needs(KEYS)
async def cancel_replay(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    session: Session = request[SESSION]
    job = console.replays.cancel(request.match_info["id"]) if console.replays else None
    if job is None:
        return render(request, "error.html", status=404, message="No such replay in this console.")
    console.store.append(audit_log.record(session.name, audit_log.REPLAY, f"replay of {job.window.integration}",
                                          f"replay {job.id} cancelled after {job.written} of {job.total} written"))
    raise web.HTTPSeeOther(f"/replay/{job.id}")
