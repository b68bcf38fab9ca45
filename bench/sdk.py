"""SDK benchmark: our `track()` to Kafka, side by side with a raw confluent-kafka `produce()` of pre-encoded
bytes (the ceiling) and with Segment's analytics-python posting to a local stub (the baseline).

The caller runs on one core (CPU 1); the broker and the stub are moved to the other (CPU 0), so
"calls/s" is per core. Closed loop: N calls as fast as possible, each call timed. Open loop: calls
scheduled at a fixed rate, latency measured from the scheduled time (no coordinated omission).
CPU per call counts every thread of the process (librdkafka's too), up to the final flush.

Run: .venv/bin/python -m bench.sdk [--calls 30000] [--rate 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import requests
from confluent_kafka import Producer

from bench.common import cpu_seconds, free_port, percentile, start_kafka, track_corpus, wait_http, write_result
from producers import Analytics
from schemas import EventCodec
from schemas.runtime.kafka import ensure_topics, producer_settings

Call = Callable[[str, str, dict[str, Any]], Any]


def _closed_loop(call: Call, corpus: list[tuple[str, str, dict[str, Any]]], drain: Callable[[], Any]) -> dict[str, Any]:
    latencies = []
    clock = time.perf_counter_ns
    cpu0, start = cpu_seconds(), time.perf_counter()
    for user, event, properties in corpus:
        t0 = clock()
        call(user, event, properties)
        latencies.append((clock() - t0) / 1000)
    calls_done = time.perf_counter()
    drain()
    drained = time.perf_counter()
    cpu = cpu_seconds() - cpu0
    n = len(corpus)
    return {"calls": n, "calls_per_s": round(n / (calls_done - start)),
            "drained_events_per_s": round(n / (drained - start)),
            "p50_us": round(percentile(latencies, 50), 1), "p99_us": round(percentile(latencies, 99), 1),
            "max_us": round(max(latencies)), "cpu_us_per_call": round(cpu / n * 1e6, 1)}


def _open_loop(call: Call, corpus: list[tuple[str, str, dict[str, Any]]], rate: int, drain: Callable[[], Any]
               ) -> dict[str, Any]:
    interval = 1.0 / rate
    latencies = []
    start = time.perf_counter()
    for i, (user, event, properties) in enumerate(corpus):
        scheduled = start + i * interval
        while (now := time.perf_counter()) < scheduled:
            # Spin (a sleep can overshoot by milliseconds on a VM), but let other threads have the GIL while
            # more than 50 us remain, as an application doing other work would: a thread spinning without
            # ever releasing it holds the client's own threads off for the 5 ms switch interval.
            if scheduled - now > 50e-6:
                time.sleep(0)
        call(user, event, properties)
        latencies.append((time.perf_counter() - scheduled) * 1e6)
    drain()
    return {"rate": rate, "calls": len(corpus), "p50_us": round(percentile(latencies, 50), 1),
            "p99_us": round(percentile(latencies, 99), 1), "max_us": round(max(latencies))}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each metric's median over the rounds."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=30_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = track_corpus(args.calls)
    open_corpus = corpus[: args.rate * 4]
    kafka, bootstrap = start_kafka()
    port = free_port()
    stub = subprocess.Popen([sys.executable, "-m", "bench.stub_server", str(port)])
    try:
        for pid in [*(n.pid for n in kafka.status().nodes if n.pid), stub.pid]:
            os.sched_setaffinity(pid, {0})
        os.sched_setaffinity(0, {1})
        ensure_topics(bootstrap, ["bench.sdk.raw", "bench.produce.raw"], partitions=3)
        wait_http(f"http://127.0.0.1:{port}/count")

        from segment.analytics.client import Client

        codec = EventCodec()
        encoded = [codec.encode({"type": "track", "messageId": f"m{i}", "userId": u, "event": e, "properties": p})
                   for i, (u, e, p) in enumerate(corpus)]
        gc.freeze()  # the pre-generated corpus is not the contenders' garbage to collect
        rounds: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.rounds):  # interleaved, so that a slow spell of a shared machine hits all three
            analytics = Analytics("wk_bench", bootstrap, topic="bench.sdk.raw")
            analytics.track("warm", "Warm Up")
            analytics.flush()
            closed = _closed_loop(analytics.track, corpus, analytics.flush)
            opened = _open_loop(analytics.track, open_corpus, args.rate, analytics.flush)
            stats = analytics.stats()
            analytics.close()
            closed.update(acked=stats["acked"], failed=stats["failed"], queued=stats["queued"])
            rounds.setdefault("eventrouter_sdk", []).append(closed)
            rounds.setdefault("eventrouter_sdk_open_loop", []).append(opened)

            # the ceiling: confluent-kafka produce() of bytes encoded before the clock starts
            producer = Producer(producer_settings(bootstrap))
            values = iter(encoded)

            def produce(user: str, _event: str, _properties: dict[str, Any], producer: Any = producer,
                        values: Any = values) -> None:
                producer.produce("bench.produce.raw", next(values), user)
                producer.poll(0)

            rounds.setdefault("raw_confluent_produce", []).append(_closed_loop(produce, corpus, producer.flush))

            # the baseline: Segment's analytics-python posting to a local stub
            client = Client("wk_bench", host=f"http://127.0.0.1:{port}", max_queue_size=len(corpus) + 10,
                            upload_size=100)
            rounds.setdefault("segment_analytics_python", []).append(_closed_loop(client.track, corpus, client.flush))
            rounds.setdefault("segment_analytics_python_open_loop", []).append(
                _open_loop(client.track, open_corpus, args.rate, client.flush))
            client.shutdown()
        results = {name: _median(runs) for name, runs in rounds.items()}
        results["rounds"] = rounds
        results["stub_received"] = requests.get(f"http://127.0.0.1:{port}/count", timeout=5).json()
    finally:
        os.kill(stub.pid, signal.SIGTERM)
        stub.wait(10)
        kafka.stop()

    ours, raw, segment = (results["eventrouter_sdk"], results["raw_confluent_produce"],
                          results["segment_analytics_python"])
    rows = [("eventrouter SDK track() -> Kafka (acks=all)", ours, results["eventrouter_sdk_open_loop"]),
            ("raw confluent-kafka produce() of pre-encoded bytes", raw, None),
            ("Segment analytics-python track() -> local HTTP stub", segment,
             results["segment_analytics_python_open_loop"])]
    table = ["| contender (caller on 1 core) | calls/s | p50 call | p99 call | CPU per call | drained events/s "
             f"| p99 at {args.rate}/s open loop |", "|---|---|---|---|---|---|---|"]
    for name, r, open_loop in rows:
        table.append(f"| {name} | {r['calls_per_s']:,.0f} | {r['p50_us']} us | {r['p99_us']} us | "
                     f"{r['cpu_us_per_call']} us | {r['drained_events_per_s']:,.0f} | "
                     f"{'-' if open_loop is None else str(open_loop['p99_us']) + ' us'} |")
    table.append("")
    table.append(f"Median of {args.rounds} interleaved rounds of {len(corpus):,} calls. Per round, acked by Kafka: "
                 f"{ours['acked']:,.0f} of {ours['queued']:,.0f} queued SDK calls, failed {ours['failed']:.0f}. "
                 f"Ours vs analytics-python: {ours['calls_per_s'] / segment['calls_per_s']:.1f}x calls/s, "
                 f"{segment['cpu_us_per_call'] / ours['cpu_us_per_call']:.1f}x less CPU per call.")
    write_result("sdk", results, "\n".join(table))


if __name__ == "__main__":
    main()
