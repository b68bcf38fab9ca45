"""The console's pages that watch the pipeline as it runs: Live events, a page whose rows come over
server-sent events (eventrouter/console/tail.py feeds them; eventrouter/console/live.py says what a view
is sent)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlencode

import orjson
from aiohttp import web

from eventrouter.console.auth import READ, VIEWER
from eventrouter.console.live import KEPT, PER_SECOND, TYPES, Filter, View
from eventrouter.console.tail import Feed
from eventrouter.console.web import CONSOLE, SESSION, Console, in_force, needs, render, security_headers

log = logging.getLogger(__name__)
KEEP_ALIVE_S = 15.0  # a comment line this often, so a proxy does not close a quiet stream


def _chosen(request: web.Request) -> tuple[str | None, Filter, list[str]] | None:
    """The integration watched (None: the events coming in), the filter, the integrations in force; None
    when the integration named is not one of them."""
    console: Console = request.app[CONSOLE]
    current = in_force(console)
    names = [i.name for i in current[1].integrations] if current else []
    integration = request.query.get("integration") or None
    if integration is not None and integration not in names:
        return None
    return integration, Filter.of(request.query), names


def _pipelines(request: web.Request) -> list[str]:
    current = in_force(request.app[CONSOLE])
    return [p.name for p in current[1].pipelines] if current else []


@needs(READ)
async def live_page(request: web.Request) -> web.StreamResponse:
    chosen = _chosen(request)
    if chosen is None:
        return render(request, "error.html", status=404, message="No such integration in the config in force.")
    integration, where, names = chosen
    query = urlencode({k: v for k, v in (("integration", integration or ""), ("name", where.name),
                                         ("type", where.type), ("user", where.user), ("pipeline", where.pipeline))
                       if v})
    return render(request, "live.html", integration=integration, filter=where, names=names, types=TYPES,
                  pipelines=_pipelines(request),
                  query=query, kept=KEPT, per_second=PER_SECOND, masked=request[SESSION].role == VIEWER)


@needs(READ)
async def live_stream(request: web.Request) -> web.StreamResponse:
    """The view's events and outcomes as server-sent events, until the page goes away."""
    console: Console = request.app[CONSOLE]
    chosen = _chosen(request)
    if chosen is None or console.hub is None:
        raise web.HTTPNotFound(text="no such live view")
    integration, where, _names = chosen
    feed = Feed(View(integration, where, masked=request[SESSION].role == VIEWER), asyncio.get_running_loop())
    if not console.hub.open(feed):
        log.warning("console: a live view refused to %s: too many open", request[SESSION].name)
        raise web.HTTPServiceUnavailable(text="too many live views are open in this console", headers={
            "Retry-After": "30"})
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    security_headers(response, request.path)
    try:
        await response.prepare(request)
        while not feed.closed:
            told = await feed.next(KEEP_ALIVE_S)
            chunk = b"".join(b"event: %s\ndata: %s\n\n" % (kind.encode(), orjson.dumps(data, default=str))
                             for kind, data in told)
            await response.write(chunk or b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the page went away
    finally:
        console.hub.close(feed)
    return response
