"""The console's answer times: each screen with 20 integrations and 100 revisions, and the test panel's
answer to one keystroke batch, through aiohttp over loopback (a real HTTP client, the real handlers and
templates, the store in memory: the Kafka store keeps what it read in memory too, so a page never waits
for the broker). Targets: a page within 200 ms, the test panel within 100 ms.

    python -m bench.console [--rounds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bench.common import percentile, write_result
from eventrouter.console.app import make_app
from eventrouter.console.auth import ADMIN, Sessions
from eventrouter.console.changes import connection_template
from eventrouter.console.screens import playbook_text
from eventrouter.console.users import add_user
from eventrouter.console.web import Console
from eventrouter.dev.memory_store import MemoryStore
from schemas.catalogue import KINDS
from schemas.documents import load_yaml
from schemas.playbook.model import starter_text

PASSWORD = "a long enough password"


def document(integrations: int = 20) -> dict[str, Any]:
    """One pipeline sending to `integrations` integrations, every kind in turn, each from its starter kit."""
    entries = []
    for n in range(integrations):
        kind = KINDS[n % len(KINDS)]
        entries.append({"name": f"{kind}-{n}", "kind": kind, "connection": connection_template(kind),
                        "playbook": load_yaml(starter_text(kind), kind)})
    return {"pipelines": [{"name": "web", "write_keys": ["wk_bench_key_0001"],
                           "integrations": [e["name"] for e in entries]}], "integrations": entries}


async def measure(rounds: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="eventrouter-bench-console-"))
    add_user(folder / "users.json", "ada", ADMIN, PASSWORD)
    base = document()
    store = MemoryStore(base)
    for n in range(99):  # 100 revisions: a writeKey added each time
        store.publish({**base, "pipelines": [{**base["pipelines"][0],
                                              "write_keys": [f"wk_bench_key_{k:04d}" for k in range(n + 2)]}]},
                      f"console: revision {n + 2}", "ada")
    console = Console(store, folder / "users.json", Sessions(b"k" * 32), environ={})
    timings: dict[str, list[float]] = {}
    async with TestClient(TestServer(make_app(console))) as client:
        await client.post("/login", data={"name": "ada", "password": PASSWORD})
        page = await (await client.get("/sources")).text()
        token = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert token
        name = base["integrations"][2]["name"]
        playbook = playbook_text(store.history()[-1].document, name)
        screens = {"sources": "/sources", "integrations": "/integrations",
                   "integration + editor": f"/integrations/{name}", "revisions": "/revisions",
                   "a revision": "/revisions/50", "audit log": "/audit", "users": "/users"}
        for _ in range(rounds):
            for label, path in screens.items():
                started = time.perf_counter()
                reply = await client.get(path)
                await reply.read()
                assert reply.status == 200, (path, reply.status)
                timings.setdefault(label, []).append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            reply = await client.post(f"/integrations/{name}/try", headers={"X-Fragment": "trial"},
                                      data={"csrf": token[1], "playbook": playbook, "sample": "track"})
            body = await reply.text()
            assert reply.status == 200 and "Request 1" in body, body[:500]
            timings.setdefault("test panel (one keystroke batch)", []).append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    timings = asyncio.run(measure(args.rounds))
    targets = {"test panel (one keystroke batch)": 100.0}
    lines = ["| console, 20 integrations, 100 revisions | first ms | p50 ms | p99 ms | target |",
             "|---|---|---|---|---|"]
    for label, values in timings.items():
        target = targets.get(label, 200.0)
        p50, p99 = percentile(values, 50), percentile(values, 99)
        verdict = "within" if max(values) <= target else "over"
        lines.append(f"| {label} | {values[0]:.1f} | {p50:.1f} | {p99:.1f} | {verdict} {target:.0f} ms |")
    write_result("console", {"rounds": args.rounds, "ms": timings}, "\n".join(lines))


if __name__ == "__main__":
    main()
