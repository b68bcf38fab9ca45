"""A local HTTP endpoint that answers 200 to any POST at once and counts events: the stand-in for
Segment's API when benchmarking analytics-python, and the HTTP ceiling for the gateway benchmark.

Run: python -m bench.stub_server PORT   (GET /count returns {"requests": n, "events": m})
"""

from __future__ import annotations

import gzip
import sys

import orjson
from aiohttp import web

_counts = {"requests": 0, "events": 0}


async def _post(request: web.Request) -> web.Response:
    body = await request.read()
    if request.headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    batch = orjson.loads(body).get("batch") if body else None
    _counts["requests"] += 1
    _counts["events"] += len(batch) if isinstance(batch, list) else 1
    return web.Response(body=b'{"success":true}', content_type="application/json")


async def _count(_request: web.Request) -> web.Response:
    return web.json_response(_counts)


def main() -> None:
    app = web.Application(handler_args={"auto_decompress": False})
    app.router.add_post("/{tail:.*}", _post)
    app.router.add_get("/count", _count)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
