"""Gateway benchmark: requests/s and events/s for single events and 100-event batches, each answered only
after Kafka acknowledged, side by side with the same client against a stub that answers 200 at once
(the HTTP ceiling of this machine: no parsing, no validation, no Kafka).

The gateway (or the stub) runs on CPU 1; the client and the broker on CPU 0.
Run: .venv/bin/python -m bench.gateway [--singles 5000] [--batches 300] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import aiohttp
import orjson

from bench.common import cpu_seconds, free_port, percentile, start_kafka, track_corpus, wait_http, write_result
from schemas import Topics
from schemas.runtime.kafka import ensure_topics


def _bodies(n: int, per_request: int) -> list[bytes]:
    corpus = track_corpus(n * per_request, seed=7)
    events = [{"type": "track", "userId": u, "event": e, "properties": p, "messageId": f"b-{i}"}
              for i, (u, e, p) in enumerate(corpus)]
    if per_request == 1:
        return [orjson.dumps(e) for e in events]
    return [orjson.dumps({"batch": events[i:i + per_request]}) for i in range(0, len(events), per_request)]


async def _drive(url: str, bodies: list[bytes], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = iter(bodies)
    headers = {"Content-Type": "application/json", "Authorization": aiohttp.BasicAuth("wk_bench", "").encode()}

    async def worker(session: aiohttp.ClientSession) -> None:
        for body in queue:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()
                statuses[reply.status] = statuses.get(reply.status, 0) + 1
            latencies.append((time.perf_counter() - started) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"requests": len(bodies), "seconds": round(elapsed, 2), "requests_per_s": round(len(bodies) / elapsed),
            "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2),
            "statuses": statuses}


def _measure(command: list[str], port: int, path: str, bodies: list[bytes], *, per_request: int,
             concurrency: int) -> dict[str, Any]:
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.sched_setaffinity(server.pid, {1})
        wait_http(f"http://127.0.0.1:{port}/health")
        cpu0 = cpu_seconds(server.pid)
        result = asyncio.run(_drive(f"http://127.0.0.1:{port}{path}", bodies, concurrency))
        cpu = cpu_seconds(server.pid) - cpu0
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(60)
    events = len(bodies) * per_request
    result["events_per_s"] = round(events / result["seconds"])
    result["server_cpu_ms_per_1k_events"] = round(cpu / events * 1e6, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--singles", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    kafka, bootstrap = start_kafka()
    results: dict[str, Any] = {}
    try:
        for node in kafka.status().nodes:
            if node.pid:
                os.sched_setaffinity(node.pid, {0})
        os.sched_setaffinity(0, {0})
        topics = Topics("bench")
        ensure_topics(bootstrap, [topics.raw, topics.invalid], partitions=3)
        for label, per_request, count, path in (("single", 1, args.singles, "/v1/track"),
                                                 ("batch100", 100, args.batches, "/v1/batch")):
            bodies = _bodies(count, per_request)
            port = free_port()
            gateway = [sys.executable, "-m", "eventrouter", "gateway", "--bootstrap-servers", bootstrap,
                       "--topic-prefix", "bench", "--write-key", "wk_bench", "--port", str(port)]
            results[f"gateway_{label}"] = _measure(gateway, port, path, bodies, per_request=per_request,
                                                   concurrency=args.concurrency)
            port = free_port()
            stub = [sys.executable, "-m", "bench.stub_server", str(port)]
            results[f"stub_{label}"] = _measure(stub, port, path, bodies, per_request=per_request,
                                                concurrency=args.concurrency)
    finally:
        kafka.stop()

    table = [f"| server (on 1 core), {args.concurrency} concurrent clients | request | requests/s | events/s | p50 "
             "| p99 | server CPU per 1k events | statuses |", "|---|---|---|---|---|---|---|---|"]
    for label, name in (("single", "1 event"), ("batch100", "100-event batch")):
        for server, title in (("gateway", "eventrouter gateway (200 after Kafka acks)"),
                              ("stub", "stub: 200 at once, no Kafka")):
            r = results[f"{server}_{label}"]
            table.append(f"| {title} | {name} | {r['requests_per_s']:,} | {r['events_per_s']:,} | {r['p50_ms']} ms | "
                         f"{r['p99_ms']} ms | {r['server_cpu_ms_per_1k_events']} ms | {r['statuses']} |")
    write_result("gateway", results, "\n".join(table))


if __name__ == "__main__":
    main()
