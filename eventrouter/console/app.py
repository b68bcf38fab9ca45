"""The console's routes (eventrouter/console/pages.py reads, edits.py changes, web.py the plumbing)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from eventrouter.console import edits, pages, recovery, watch
from eventrouter.console.web import CONSOLE, MAX_FORM_BYTES, Console, errors, guard, headers


def make_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[headers, errors, guard], client_max_size=MAX_FORM_BYTES)
    app[CONSOLE] = console
    app.router.add_get("/login", pages.login_page)
    app.router.add_post("/login", pages.login)
    app.router.add_post("/logout", pages.logout)
    app.router.add_get("/bootstrap", pages.bootstrap_page)
    app.router.add_post("/bootstrap", pages.bootstrap)
    app.router.add_get("/", pages.home)
    app.router.add_get("/overview", pages.overview_page)
    app.router.add_get("/sources", pages.sources_page)
    app.router.add_get("/integrations", pages.integrations_page)
    app.router.add_get("/integrations/{name}", pages.integration_page)
    app.router.add_get("/integrations/{name}/delivery", pages.delivery_page)
    app.router.add_post("/integrations/{name}/try", pages.try_playbook)
    app.router.add_post("/integrations/{name}/live", pages.live_event)
    app.router.add_post("/integrations", edits.add_integration)
    app.router.add_post("/integrations/{name}/playbook", edits.save_playbook)
    app.router.add_post("/integrations/{name}/{change}", edits.change_integration)
    app.router.add_post("/sources/{change}", edits.change_source)
    app.router.add_get("/revisions", pages.revisions_page)
    app.router.add_get("/revisions/{number}", pages.revision_page)
    app.router.add_post("/revisions/{number}/rollback", edits.rollback)
    app.router.add_get("/audit", pages.audit_page)
    app.router.add_get("/users", pages.users_page)
    app.router.add_get("/live", watch.live_page)
    app.router.add_get("/live/stream", watch.live_stream)
    app.router.add_get("/deadletters", pages.dead_letters_page)
    app.router.add_get("/deadletters/{where}", pages.dead_letters_of)
    app.router.add_get("/deadletters/{where}/{partition}/{offset}", pages.dead_letter)
    app.router.add_post("/deadletters/{where}/reinject", edits.send_letters_again)
    app.router.add_get("/replay", recovery.replay_page)
    app.router.add_post("/replay", recovery.replay)
    app.router.add_get("/replay/{id}", recovery.replay_job)
    app.router.add_post("/replay/{id}/cancel", recovery.cancel_replay)
    app.router.add_post("/users/{change}", edits.change_user)
    app.router.add_static("/static/", Path(__file__).parent / "static", append_version=False)
    app.router.add_route("*", "/{tail:.*}", pages.not_found)
    app.on_shutdown.append(_end_streams)
    return app


async def _end_streams(app: web.Application) -> None:
    """Live views' streams end at once, or stopping would wait for every open page."""
    hub = app[CONSOLE].hub
    if hub is not None:
        await asyncio.to_thread(hub.stop)


__all__ = ["make_app"]
