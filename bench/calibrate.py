"""How fast this machine is right now, in our own work: the worker's routing of the chain benchmark's events
(decode, check, dedup key, three starter playbooks, three Outbound records) on one core, no Kafka.

This shared 2-core VM drifts: the same code routed an event in 58 us one day and 101 us the next, with no
CPU stolen by the host at the time. A benchmark that prints this figure beside its results says which
kind of day it ran on; compare runs by their ratio to it, not by their absolute numbers.

`machine_us()` measures it as plain Python in a process of its own (EVENTROUTER_PURE=1), whether or not
the compiled hot path is built (schemas/native.py), so the figure stays comparable with runs from before
that build existed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROUNDS = 5


def routing_us(config_text: str, corpus: list[dict[str, Any]]) -> float:
    """Best of ROUNDS: microseconds to admit and route one event of `corpus` (a few thousand is plenty)."""
    from schemas import EventCodec, Topics
    from schemas.config import parse_config
    from streams.router import Admitted, Router, Source

    router = Router(parse_config(config_text), 1, Topics("calibrate"))
    codec = EventCodec()
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    sources = [Source(codec.encode({**e, "writeKey": "wk_bench", "sentAt": now, "originalTimestamp": now}), "raw", 0,
                      i, int(time.time() * 1000)) for i, e in enumerate(corpus)]
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for source in sources:
            admitted = router.admit(source)
            if isinstance(admitted, Admitted):
                router.route(admitted)
        best = min(best, time.perf_counter() - started)
    return round(best / len(sources) * 1e6, 1)


def machine_us(config_text: str, corpus: list[dict[str, Any]]) -> float:
    """routing_us, as plain Python, in a child process."""
    done = subprocess.run([sys.executable, "-m", "bench.calibrate"], input=json.dumps([config_text, corpus]),
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "EVENTROUTER_PURE": "1"}, timeout=300)
    return float(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    config, events = json.loads(sys.stdin.read())
    print(routing_us(config, events))
