"""`eventrouter console`: wire the console's parts and serve it. The session key comes from
EVENTROUTER_CONSOLE_KEY (consoles given the same key accept each other's sessions), else a random one
(sessions end with the process). With no user yet, a one-time bootstrap token is printed once."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from eventrouter.console.app import make_app
from eventrouter.console.auth import Sessions
from eventrouter.console.delivery import KafkaDelivery
from eventrouter.console.letters import KafkaLetters
from eventrouter.console.replays import KafkaReplays
from eventrouter.console.store import Heartbeats, KafkaStore
from eventrouter.console.tail import LiveHub
from eventrouter.console.users import Bootstrap, load_users
from eventrouter.console.web import Console, in_force
from eventrouter.environment import SET_NAMES_ENV
from eventrouter.status import status
from schemas import Topics

log = logging.getLogger(__name__)
KEY_ENV = "EVENTROUTER_CONSOLE_KEY"


def session_key(environ: dict[str, str]) -> bytes:
    value = environ.get(KEY_ENV, "")
    return hashlib.sha256(value.encode()).digest() if value else secrets.token_bytes(32)


def build(bootstrap: str, topics: Topics, users: Path, *, client: dict[str, Any] | None = None,
          environ: dict[str, str] | None = None, secure_cookies: bool = False) -> tuple[Console, KafkaStore]:
    environ = dict(os.environ) if environ is None else environ
    key = session_key(environ)
    if environ.get(SET_NAMES_ENV) is not None:  # under `up`: what is set where the forwarders run, as up saw it
        environ = {name: "set" for name in environ[SET_NAMES_ENV].split(",") if name}
    store = KafkaStore(bootstrap, topics, client)
    console = Console(store, users, Sessions(key), environ=environ,
                      bootstrap=None if load_users(users) else Bootstrap(), secure_cookies=secure_cookies,
                      letters=KafkaLetters(bootstrap, topics, client),
                      status=functools.partial(status, bootstrap, topics, client, 5.0),
                      delivery=KafkaDelivery(bootstrap, topics, client),
                      replays=KafkaReplays(bootstrap, topics, client), heartbeats=Heartbeats(bootstrap, topics, client))
    console.hub = LiveHub(bootstrap, topics, client, pipelines=lambda: write_key_pipelines(console))
    return console, store


def write_key_pipelines(console: Console) -> dict[str, str]:
    """writeKey -> pipeline, in the config in force."""
    current = in_force(console)
    return {key: p.name for p in current[1].pipelines for key in p.write_keys} if current else {}


def bootstrap_line(console: Console, url: str) -> str | None:
    if console.bootstrap is None or console.bootstrap.token is None:
        return None
    return (f"no console user yet: make the first admin at {url}/bootstrap with the one-time token "
            f"{console.bootstrap.token}")


def serve(console: Console, store: KafkaStore, host: str, port: int) -> None:
    store.start()
    if console.heartbeats is not None:
        console.heartbeats.start()
    url = f"http://{host}:{port}"
    print(f"console: {url} (users: {console.users_path})", flush=True)
    line = bootstrap_line(console, url)
    if line:
        print(line, flush=True)
    try:
        web.run_app(make_app(console), host=host, port=port, print=None, access_log=None)
    finally:
        if console.heartbeats is not None:
            console.heartbeats.stop()
        store.stop()

