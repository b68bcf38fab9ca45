"""Forwarder benchmark: one `eventrouter forward` process delivering a backlog of Outbound records to
a local vendor stand-in, at the vendor's batch size, from a topic of 6 partitions (the worker's
default); side by side in one run with a naive loop that posts one request per event (same records,
same stand-in, same session reuse).

The contender runs pinned to CPU 1; the broker and the stand-in (this process) to CPU 0. Timing runs
from the first request reaching the stand-in to the last event accepted; CPU per event counts every
thread of the contender's process.

    python -m bench.forwarder [--events 150000] [--naive-events 5000] [--rounds 3] [--partitions 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench.common import cpu_seconds, rss_mib, start_kafka, write_result

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk], integrations: [amplitude, mixpanel, meta]}}
integrations:
  - name: amplitude
    kind: amplitude
    connection: {{api_key: "${{BENCH_AMP_KEY}}", endpoint: "{url}/2/httpapi", allow_http: true, allow_private: true}}
    playbook: "starter:amplitude"
  - name: mixpanel
    kind: mixpanel
    connection: {{project_id: "42", username: sa.user, secret: "${{BENCH_MP_SECRET}}", endpoint: "{mp}/import",
                  allow_http: true, allow_private: true}}
    playbook: "starter:mixpanel"
  - name: meta
    kind: meta_capi
    connection: {{pixel_id: "1234567890", access_token: "${{BENCH_META_TOKEN}}", endpoint: "{meta}",
                  allow_http: true, allow_private: true}}
    playbook: "starter:meta_capi"
"""
ENV = {"BENCH_AMP_KEY": "amp-key", "BENCH_MP_SECRET": "mp-secret", "BENCH_META_TOKEN": "meta-token",
       "EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8"}  # the stand-ins, on loopback (forwarders/ssrf.py)


def payload(kind: str, i: int, now_s: int) -> dict[str, Any]:
    """A realistic vendor-shaped payload, as the starter playbooks make them (~400-600 bytes)."""
    user = f"user-{i % 5000:05d}"
    properties = {"order_id": f"o-{i}", "revenue": 42.5 + i % 10, "currency": "EUR", "coupon": "WINTER",
                  "products": [{"product_id": f"p{i % 97}", "price": 12.5, "quantity": 2}]}
    if kind == "amplitude":
        return {"event_type": "Order Completed", "user_id": user, "time": now_s * 1000, "event_properties": properties,
                "user_properties": {"plan": "pro"}, "ip": "203.0.113.7", "platform": "Web", "library": "eventrouter"}
    if kind == "mixpanel":
        return {"event": "Order Completed", "properties": {"time": now_s * 1000, "distinct_id": user,
                                                            "$user_id": user, **properties}}
    return {"event_name": "Purchase", "event_time": now_s, "event_id": f"m-{i}", "action_source": "website",
            "event_source_url": "https://shop.example/checkout",
            "user_data": {"em": ["a" * 64], "external_id": ["b" * 64], "client_ip_address": "203.0.113.7",
                          "client_user_agent": "Mozilla/5.0"},
            "custom_data": {"value": 42.5, "currency": "EUR", "contents": [{"id": "p1", "quantity": 2}]}}


def outbound(kind: str, i: int, now_ms: int) -> dict[str, Any]:
    """The Outbound record the worker would write for event i of the benchmark's corpus."""
    return {"messageId": f"bench-{i}-{uuid.uuid4().hex[:8]}", "integration": kind, "kind": kind, "pipeline": "web",
            "type": "track", "eventName": "Order Completed", "userId": f"user-{i % 5000:05d}", "anonymousId": None,
            "timestamp": now_ms, "receivedAt": now_ms,
            "payload": orjson.dumps(payload(kind, i, now_ms // 1000)).decode(), "configRevision": 1,
            "replayed": False, "sourceTopic": "b.raw", "sourcePartition": 0, "sourceOffset": i}


PARTITIONS = [6]  # of the integration topic: the worker's default (--partitions)


def preload(bootstrap: str, topic: str, kind: str, n: int) -> None:
    from confluent_kafka import Producer

    from schemas import outbound_codec
    from schemas.runtime.kafka import ensure_topics, producer_settings

    ensure_topics(bootstrap, [topic], partitions=PARTITIONS[0])
    codec = outbound_codec()
    producer = Producer(producer_settings(bootstrap, {"linger.ms": 50}))
    now_ms = int(time.time() * 1000)
    for i in range(n):
        value = codec.encode(outbound(kind, i, now_ms))
        while True:
            try:
                producer.produce(topic, value, f"user-{i % 5000:05d}".encode())
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def _measure(stand_in: Any, n: int, pid: int, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    started = cpu = 0.0
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if stand_in.requests and not started:
            started, cpu = time.monotonic(), cpu_seconds(pid)
        if len(stand_in.accepted) >= n:
            seconds = time.monotonic() - started
            used = cpu_seconds(pid) - cpu
            return {"events": n, "seconds": round(seconds, 2), "events_per_s": round(n / seconds),
                    "cpu_us_per_event": round(used / n * 1e6, 1), "rss_mib": round(rss_mib(pid), 1),
                    "requests": stand_in.requests, "duplicates": stand_in.duplicates}
        if process.poll() is not None:
            raise RuntimeError(f"contender exited {process.returncode}")
        time.sleep(0.02)
    raise TimeoutError("contender did not finish")


def run_forwarder(bootstrap: str, prefix: str, name: str, config: Path, *, stand_in: Any, n: int) -> dict[str, Any]:
    log = open(config.parent / f"{name}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "eventrouter", "forward", name, "--bootstrap-servers", bootstrap,
         "--topic-prefix", prefix, "--config", str(config), "--partitions", str(PARTITIONS[0])],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
    try:
        return _measure(stand_in, n, process.pid, process)
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def naive(bootstrap: str, topic: str, url: str, n: int) -> None:
    """One request per event: consume, decode, POST `{api_key, events: [event]}`, commit per batch."""
    import requests
    from confluent_kafka import Consumer

    from schemas import outbound_codec
    from schemas.runtime.kafka import consumer_settings

    codec = outbound_codec()
    consumer = Consumer(consumer_settings(bootstrap, f"naive-{uuid.uuid4().hex[:6]}",
                                          {"enable.auto.commit": False, "enable.auto.offset.store": True}))
    consumer.subscribe([topic])
    session = requests.Session()
    done = 0
    while done < n:
        messages = consumer.consume(num_messages=500, timeout=1.0)
        for message in messages:
            record = codec.decode(message.value())
            body = {"api_key": "amp-key", "events": [json.loads(record["payload"])]}
            response = session.post(url, data=json.dumps(body), headers={"Content-Type": "application/json"},
                                    timeout=(3, 10))
            response.raise_for_status()
            done += 1
        if messages:
            consumer.commit(asynchronous=False)
    consumer.close()


def run_naive(bootstrap: str, topic: str, stand_in: Any, n: int) -> dict[str, Any]:
    process = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "bench.forwarder", "--child", "--bootstrap", bootstrap,
         "--topic", topic, "--url", stand_in.url + "/2/httpapi", "--events", str(n)], cwd=REPO)
    try:
        return _measure(stand_in, n, process.pid, process)
    finally:
        process.wait(120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=150_000)
    parser.add_argument("--naive-events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6, help="of the integration topic (the worker's default)")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic")
    parser.add_argument("--url")
    args = parser.parse_args()
    if args.child:
        naive(args.bootstrap, args.topic, args.url, args.events)
        return
    PARTITIONS[0] = args.partitions
    import gc
    import tempfile

    from eventrouter.dev.standins import AmplitudeStandIn, MetaStandIn, MixpanelStandIn

    # The stand-ins (threads of this process) keep every event they accept: hundreds of thousands of
    # dicts, which the cyclic collector would scan again and again, stalling the stand-ins for 100s of ms
    # (measured: the benchmark then measured them, not the forwarder). They make no cycles.
    gc.disable()

    kafka, bootstrap = start_kafka()
    stand_ins: dict[str, Any] = {}
    try:
        for node in kafka.status().nodes:
            if node.pid:
                os.sched_setaffinity(node.pid, {0})
        os.sched_setaffinity(0, {0})
        folder = Path(tempfile.mkdtemp(prefix="bench-forwarder-"))
        contenders = [("eventrouter forward: Amplitude (2,000 events per request)", "amplitude"),
                      ("eventrouter forward: Mixpanel /import (2,000 per request)", "mixpanel"),
                      ("eventrouter forward: Meta CAPI (1,000 per request)", "meta"),
                      ("naive: one request per event (Amplitude)", "naive")]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in contenders}
        warm_up = [("warm-up (not counted)", "amplitude")]
        for round_ in range(-1, args.rounds):  # round -1 warms the broker and the caches up
            for name, kind in warm_up if round_ < 0 else contenders:
                stand_ins = {"amplitude": AmplitudeStandIn().start(), "mixpanel": MixpanelStandIn().start(),
                             "meta": MetaStandIn().start()}
                config = folder / "eventrouter.yaml"
                config.write_text(CONFIG.format(url=stand_ins["amplitude"].url, mp=stand_ins["mixpanel"].url,
                                                meta=stand_ins["meta"].url))
                prefix = f"bf{uuid.uuid4().hex[:8]}"
                vendor = "amplitude" if kind == "naive" else kind
                n = args.naive_events if kind == "naive" else args.events if round_ >= 0 else 5000
                topic = f"{prefix}.out.{vendor}"
                preload(bootstrap, topic, "meta_capi" if kind == "meta" else vendor, n)
                row = run_naive(bootstrap, topic, stand_ins["amplitude"], n) if kind == "naive" \
                    else run_forwarder(bootstrap, prefix, vendor, config, stand_in=stand_ins[vendor], n=n)
                runs.setdefault(name, []).append(row)
                print(f"round {round_ + 1}: {name}: {row}", flush=True)
                for stand_in in stand_ins.values():
                    stand_in.stop()
        runs.pop(warm_up[0][0])
        rows = {name: sorted(rs, key=lambda r: r["events_per_s"])[len(rs) // 2] for name, rs in runs.items()}
        naive_rate = rows[contenders[-1][0]]["events_per_s"]
        lines = ["| one process on 1 core | events/s (median) | range | CPU per event | requests | vs naive |",
                 "|---|---|---|---|---|---|"]
        for name, row in rows.items():
            rates = [r["events_per_s"] for r in runs[name]]
            lines.append(f"| {name} | {row['events_per_s']:,} | {min(rates):,}-{max(rates):,} | "
                         f"{row['cpu_us_per_event']} us | {row['requests']:,} | "
                         f"{row['events_per_s'] / naive_rate:.1f}x |")
        write_result("forwarder", {"events": args.events, "naive_events": args.naive_events, "rounds": args.rounds,
                                   "rows": rows, "runs": runs}, "\n".join(lines))
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
