"""Per-event delivery benchmark: one `eventrouter forward` process delivering to a webhook (one request
per event) whose receiver answers each request after 50 ms, side by side in one run with today's
behaviour before lanes (`delivery.max_in_flight: 1`: one request at a time); and a batched vendor
(the Amplitude stand-in, 2,000 events a request) both ways, to show batching did not regress.

Each contender: a backlog of Outbound records (6 partitions, the worker's default) delivered as fast as
it goes (events/s from the first request to the last event), then for the webhook an open loop at
`--rate` events/s (written to Kafka by this process) for `--seconds`: the latency each event adds over
the receiver's own 50 ms (from its write to Kafka to its arrival at the receiver) as p50/p99. The
receiver (a subprocess, aiohttp: holds any number of requests at once) counts per user the events that
arrive out of order (an n lower than one already seen) and the Idempotency-Keys seen twice.

The contender runs pinned to CPU 1; the broker, the receiver and this process to CPU 0.

    python -m bench.per_event [--events 20000] [--old-events 600] [--amplitude-events 60000] [--rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.common import free_port, percentile, start_kafka, wait_http, write_result
from bench.forwarder import ENV, REPO, _measure
from bench.forwarder import preload as preload_amplitude

PARTITIONS = 6
LATENCY_S = 0.05
USERS = 2000
CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk], integrations: [hook, amplitude]}}
integrations:
  - name: hook
    kind: webhook
    connection: {{url: "{hook}/in", allow_http: true, allow_private: true}}
    playbook: "starter:webhook"
    delivery: {{{delivery}}}
  - name: amplitude
    kind: amplitude
    connection: {{api_key: "${{BENCH_AMP_KEY}}", endpoint: "{amp}/2/httpapi", allow_http: true, allow_private: true}}
    playbook: "starter:amplitude"
    delivery: {{{delivery}}}
"""


# -- the receiver (a subprocess) -----------------------------------------------------------------------
def serve(port: int) -> None:
    """Answer every POST after LATENCY_S; GET /stats: what arrived; POST /reset."""
    from aiohttp import web

    seen: dict[str, int] = {}
    keys: set[str] = set()
    stats: dict[str, Any] = {}

    def reset() -> None:
        seen.clear()
        keys.clear()
        stats.update(requests=0, events=0, out_of_order=0, duplicates=0, first=None, added_ms=[])

    async def post(request: web.Request) -> web.Response:
        arrived = time.time() * 1000
        event = orjson.loads(await request.read())
        key = request.headers.get("Idempotency-Key", "")
        stats["first"] = stats["first"] or time.monotonic()
        stats["requests"] += 1
        if key in keys:
            stats["duplicates"] += 1
        else:
            keys.add(key)
            stats["events"] += 1
            stats["added_ms"].append(round(arrived - event["sent_ms"], 1))
        user, n = event["user"], event["n"]
        if n < seen.get(user, -1):
            stats["out_of_order"] += 1
        seen[user] = max(n, seen.get(user, -1))
        await asyncio.sleep(LATENCY_S)
        return web.Response(body=b'{"ok":true}', content_type="application/json")

    async def get_stats(request: web.Request) -> web.Response:
        body = {k: v for k, v in stats.items() if k not in ("added_ms", "first")}
        body["since_first_s"] = time.monotonic() - stats["first"] if stats["first"] else 0.0
        if request.query.get("latency"):
            body["added_ms"] = stats["added_ms"]
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def post_reset(_request: web.Request) -> web.Response:
        reset()
        return web.Response(text="ok")

    reset()
    app = web.Application()
    app.router.add_post("/in", post)
    app.router.add_get("/stats", get_stats)
    app.router.add_post("/reset", post_reset)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.per_event", "--serve", str(self.port)],
                                        cwd=REPO)
        os.sched_setaffinity(self.process.pid, {0})
        wait_http(self.url + "/stats")

    def stats(self, latency: bool = False) -> dict[str, Any]:
        import requests

        return dict(requests.get(self.url + "/stats" + ("?latency=1" if latency else ""), timeout=30).json())

    def reset(self) -> None:
        import requests

        requests.post(self.url + "/reset", timeout=10)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


# -- writing events ------------------------------------------------------------------------------------
def record(i: int, sent_ms: int, codec: Any, prefix: str) -> tuple[bytes, bytes]:
    user = f"user-{i % USERS:05d}"
    payload = {"user": user, "n": i // USERS, "sent_ms": sent_ms, "event": "Order Completed",
               "properties": {"order_id": f"o-{i}", "revenue": 42.5, "currency": "EUR", "coupon": "WINTER",
                              "products": [{"product_id": f"p{i % 97}", "price": 12.5, "quantity": 2}]}}
    value = codec.encode({
        "messageId": f"{prefix}-{i}", "integration": "hook", "kind": "webhook", "pipeline": "web", "type": "track",
        "eventName": "Order Completed", "userId": user, "anonymousId": None, "timestamp": sent_ms,
        "receivedAt": sent_ms, "payload": orjson.dumps(payload).decode(), "configRevision": 1, "replayed": False,
        "sourceTopic": "b.raw", "sourcePartition": 0, "sourceOffset": i})
    return user.encode(), value


def producer(bootstrap: str, topic: str) -> Any:
    from confluent_kafka import Producer

    from schemas.runtime.kafka import ensure_topics, producer_settings

    ensure_topics(bootstrap, [topic], partitions=PARTITIONS)
    return Producer(producer_settings(bootstrap, {"linger.ms": 5}))


def preload_hook(bootstrap: str, topic: str, n: int) -> None:
    from schemas import outbound_codec

    codec, out = outbound_codec(), producer(bootstrap, topic)
    now_ms = int(time.time() * 1000)
    for i in range(n):
        key, value = record(i, now_ms, codec, "backlog")
        out.produce(topic, value, key)
        if i % 1000 == 0:
            out.poll(0)
    assert out.flush(60) == 0


def open_loop(bootstrap: str, topic: str, rate: int, seconds: float) -> int:
    """Write `rate` events a second for `seconds`, each stamped with its time of writing; how many."""
    from schemas import outbound_codec

    codec, out = outbound_codec(), producer(bootstrap, topic)
    started, i = time.monotonic(), 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * rate)
        while i < due:
            key, value = record(i, int(time.time() * 1000), codec, "open")
            out.produce(topic, value, key)
            i += 1
        out.poll(0)
        time.sleep(0.002)
    assert out.flush(60) == 0
    return i


# -- one contender -------------------------------------------------------------------------------------
def forward(bootstrap: str, prefix: str, name: str, config: Path) -> subprocess.Popen[bytes]:
    log = open(config.parent / f"{prefix}-{name}.log", "wb")  # noqa: SIM115 - the process holds it
    return subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "eventrouter", "forward", name, "--bootstrap-servers", bootstrap,
         "--topic-prefix", prefix, "--config", str(config), "--partitions", str(PARTITIONS)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENV})


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(60)


def wait_for(receiver: Receiver, n: int, process: subprocess.Popen[bytes], timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = receiver.stats()
        if stats["events"] >= n:
            return stats
        if process.poll() is not None:
            raise RuntimeError(f"forwarder exited {process.returncode}")
        time.sleep(0.2)
    raise TimeoutError(f"{receiver.stats()['events']} of {n} events arrived")


def run_hook(bootstrap: str, folder: Path, delivery: str, n: int, *, rate: int = 0,
             seconds: float = 0.0) -> dict[str, Any]:
    receiver = Receiver()
    prefix = f"pe{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.out.hook"
    (folder / f"{prefix}.yaml").write_text(CONFIG.format(hook=receiver.url, amp="http://127.0.0.1:9",
                                                         delivery=delivery))
    try:
        preload_hook(bootstrap, topic, n)
        process = forward(bootstrap, prefix, "hook", folder / f"{prefix}.yaml")
        try:
            stats = wait_for(receiver, n, process)
            row: dict[str, Any] = {
                "events": n, "seconds": round(stats["since_first_s"], 2),
                "events_per_s": round(n / stats["since_first_s"]), "requests": stats["requests"],
                "out_of_order": stats["out_of_order"], "duplicates": stats["duplicates"]}
            if rate:
                receiver.reset()
                sent = open_loop(bootstrap, topic, rate, seconds)
                stats = wait_for(receiver, sent, process, timeout=seconds + 120)
                time.sleep(1.0)
                stats = receiver.stats(latency=True)
                added = stats["added_ms"]
                row.update({"open_loop_rate": rate, "open_loop_events": sent, "open_loop_arrived": stats["events"],
                            "added_ms_p50": percentile(added, 50), "added_ms_p99": percentile(added, 99),
                            "added_ms_max": max(added), "open_loop_out_of_order": stats["out_of_order"],
                            "open_loop_duplicates": stats["duplicates"]})
        finally:
            stop(process)
    finally:
        receiver.stop()
    return row


def run_amplitude(bootstrap: str, folder: Path, delivery: str, n: int) -> dict[str, Any]:
    from eventrouter.dev.standins import AmplitudeStandIn

    stand_in = AmplitudeStandIn().start()
    prefix = f"pa{uuid.uuid4().hex[:8]}"
    (folder / f"{prefix}.yaml").write_text(CONFIG.format(hook="http://127.0.0.1:9", amp=stand_in.url,
                                                         delivery=delivery))
    try:
        preload_amplitude(bootstrap, f"{prefix}.out.amplitude", "amplitude", n)
        process = forward(bootstrap, prefix, "amplitude", folder / f"{prefix}.yaml")
        try:
            return _measure(stand_in, n, process.pid, process)
        finally:
            stop(process)
    finally:
        stand_in.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000, help="webhook backlog, lanes at once")
    parser.add_argument("--old-events", type=int, default=600, help="webhook backlog, one request at a time")
    parser.add_argument("--amplitude-events", type=int, default=60_000)
    parser.add_argument("--rate", type=int, default=1000, help="open loop, events/s")
    parser.add_argument("--seconds", type=float, default=20.0, help="open loop")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    import gc

    gc.disable()  # the stand-in keeps every event it accepts (see bench/forwarder.py)
    kafka, bootstrap = start_kafka()
    try:
        for node in kafka.status().nodes:
            if node.pid:
                os.sched_setaffinity(node.pid, {0})
        os.sched_setaffinity(0, {0})
        folder = Path(tempfile.mkdtemp(prefix="bench-per-event-"))
        old, new = "max_in_flight: 1", ""  # new: the defaults (max_in_flight 64, linger 0 for per-event)
        rows: dict[str, dict[str, Any]] = {}
        run_amplitude(bootstrap, folder, new, 5000)  # warm-up: the broker's JIT, the caches
        contenders = [
            ("webhook, one request at a time (before: max_in_flight 1)",
             lambda: run_hook(bootstrap, folder, old, args.old_events)),
            ("webhook, lanes at once (max_in_flight 64, the default)",
             lambda: run_hook(bootstrap, folder, new, args.events, rate=args.rate, seconds=args.seconds)),
            ("amplitude, 2,000 a request (before: max_in_flight 1)",
             lambda: run_amplitude(bootstrap, folder, old, args.amplitude_events)),
            ("amplitude, 2,000 a request (max_in_flight 64, the default)",
             lambda: run_amplitude(bootstrap, folder, new, args.amplitude_events)),
        ]
        for name, contender in contenders:
            rows[name] = contender()
            print(f"{name}: {rows[name]}", flush=True)
        lines = ["| one forwarder process on 1 core | events | events/s | requests | out of order per user | "
                 "duplicates | open loop: rate, added latency p50 / p99 / max over the receiver's 50 ms |",
                 "|---|---|---|---|---|---|---|"]
        for name, row in rows.items():
            loop = (f"{row['open_loop_rate']:,}/s ({row['open_loop_arrived']:,} of {row['open_loop_events']:,} "
                    f"arrived, {row['open_loop_out_of_order']} out of order): {row['added_ms_p50']:.0f} / "
                    f"{row['added_ms_p99']:.0f} / {row['added_ms_max']:.0f} ms") if "open_loop_rate" in row else "-"
            lines.append(f"| {name} | {row['events']:,} | {row['events_per_s']:,} | {row['requests']:,} | "
                         f"{row.get('out_of_order', '-')} | {row['duplicates']} | {loop} |")
        write_result("per_event", {"receiver_latency_s": LATENCY_S, "partitions": PARTITIONS, "users": USERS,
                                   "rows": rows}, "\n".join(lines))
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
