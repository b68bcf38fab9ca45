"""Stream worker benchmark: one worker process, three integrations (GA4, Amplitude, Meta CAPI starter
kits), a backlog of pre-produced raw events; events/s and CPU-us per event, side by side in one run:

- `eventrouter worker` (confluent-kafka engine, the default): dedup table, metrics, acks=all outputs
- `eventrouter worker --engine faust` (faust-streaming 0.15.3, aiokafka)
- control: a plain confluent-kafka consume -> admit/route -> produce loop doing the same routing work,
  no dedup, no metrics (what the work costs without a framework)
- Faust alone: a Faust agent that only takes and acks the records (Faust's own per-record cost)

The contender runs pinned to CPU 1, the broker to CPU 0. Timing runs from the first record read to
the last one routed (outputs acknowledged), so process start-up is not counted.

    python -m bench.worker [--events 60000] [--rounds 3] [--only kafka,control] [--unpinned]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, free_port, produce_all, rss_mib, start_kafka, track_corpus, write_result

REPO = Path(__file__).resolve().parents[1]
PIN = ["taskset", "-c", "1"]  # the contender's core; emptied by --unpinned
CONFIG = """
pipelines:
  - {name: web, write_keys: [wk_bench], integrations: [ga4, amplitude, meta]}
integrations:
  - {name: ga4, kind: ga4, playbook: "starter:ga4"}
  - {name: amplitude, kind: amplitude, playbook: "starter:amplitude"}
  - {name: meta, kind: meta_capi, playbook: "starter:meta_capi"}
"""


def corpus(n: int) -> list[tuple[bytes, bytes]]:
    """(key, Avro bytes) of n realistic server-side events: 80% track, identify and page for the rest."""
    from schemas import EventCodec

    codec = EventCodec()
    out = []
    for i, (user, event, properties) in enumerate(track_corpus(n)):
        message: dict[str, Any] = {
            "type": "track", "event": event, "userId": user, "properties": properties,
            "messageId": f"bench-{i}-{uuid.uuid4().hex[:8]}", "writeKey": "wk_bench",
            "originalTimestamp": "2026-11-26T10:00:00.000Z", "sentAt": "2026-11-26T10:00:00.100Z",
            "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "locale": "en-GB",
                        "library": {"name": "eventrouter-python", "version": "0.1.0"},
                        "page": {"url": "https://shop.example/checkout", "path": "/checkout"},
                        "traits": {"email": f"{user}@example.com"}}}
        if i % 10 == 8:
            message = {**message, "type": "identify", "traits": {"email": f"{user}@example.com", "plan": "pro"}}
            message.pop("event")
            message.pop("properties")
        elif i % 10 == 9:
            message = {**message, "type": "page", "name": "Checkout"}
            message.pop("event")
        out.append((user.encode(), codec.encode(message)))
    return out


def preload(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    from schemas.runtime.kafka import ensure_topics, producer_settings

    ensure_topics(bootstrap, [topic], partitions=3)
    producer = Producer(producer_settings(bootstrap, {"linger.ms": 50}))
    produce_all(producer, topic, records)
    assert producer.flush(60) == 0


def _metric(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def run_worker(bootstrap: str, prefix: str, n: int, engine: str, config: Path) -> dict[str, Any]:
    port = free_port()
    log = open(config.parent / f"{engine}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [*PIN, sys.executable, "-m", "eventrouter", "worker", "--bootstrap-servers", bootstrap,
         "--topic-prefix", prefix, "--config", str(config), "--metrics-port", str(port), "--engine", engine,
         "--data-dir", str(config.parent / f"{engine}-data")], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        started = cpu = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            seen = _metric(port, "eventrouter_worker_events_in_total")
            if seen > 0 and not started:
                started, cpu = time.monotonic(), cpu_seconds(process.pid)
                first = seen
            if seen >= n:
                seconds = time.monotonic() - started
                used = cpu_seconds(process.pid) - cpu
                counted = n - first
                return {"events": n, "seconds": round(seconds, 2), "events_per_s": round(counted / seconds),
                        "cpu_us_per_event": round(used / counted * 1e6, 1), "rss_mib": round(rss_mib(process.pid), 1),
                        "outputs": _metric(port, "eventrouter_worker_events_out_total")}
            if process.poll() is not None:
                raise RuntimeError(f"{engine} worker exited {process.returncode}")
            time.sleep(0.2)  # each scrape costs the worker CPU: poll gently
        raise TimeoutError(f"{engine} worker did not finish")
    finally:
        process.terminate()
        process.wait(60)
        log.close()


def run_child(kind: str, bootstrap: str, prefix: str, n: int) -> dict[str, Any]:
    out = subprocess.run([*PIN, sys.executable, "-m", "bench.worker", "--child", kind,
                          "--bootstrap", bootstrap, "--prefix", prefix, "--events", str(n)],
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    lines = [line[line.index('{"events"'):] for line in out.stdout.splitlines() if '{"events"' in line]
    if not lines:
        raise RuntimeError(f"{kind} failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1].split("}")[0] + "}")
    return result


def control(bootstrap: str, prefix: str, n: int) -> dict[str, Any]:
    """The plain loop: consume(1000), route each record, produce the outputs, wait for their acks."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

    from schemas import Topics
    from schemas.config import parse_config
    from schemas.runtime.kafka import consumer_settings, ensure_topics, producer_settings
    from streams.router import Rejected, Router, Source

    topics = Topics(prefix)
    router = Router(parse_config(CONFIG), 1, topics)
    ensure_topics(bootstrap, [topics.invalid, *router.integration_topics()], partitions=3)
    consumer = Consumer(consumer_settings(bootstrap, f"control-{uuid.uuid4().hex[:6]}", {"enable.auto.commit": False}))
    consumer.assign([TopicPartition(topics.raw, p, OFFSET_BEGINNING) for p in range(3)])
    producer = Producer(producer_settings(bootstrap, {"linger.ms": 5, "queue.buffering.max.messages": 1_000_000}))
    done = 0
    started = cpu = 0.0
    outputs = 0
    while done < n:
        messages = consumer.consume(num_messages=1000, timeout=1.0)
        if messages and not started:
            started, cpu = time.monotonic(), cpu_seconds()
        for message in messages:
            source = Source(message.value(), topics.raw, message.partition() or 0, message.offset() or 0,
                            message.timestamp()[1])
            admitted = router.admit(source)
            if isinstance(admitted, Rejected):
                producer.produce(admitted.dead_letter.topic, admitted.dead_letter.value)
                continue
            for output in router.route(admitted).outputs:
                producer.produce(output.topic, output.value, output.key)
                outputs += 1
        producer.flush(30)
        done += len(messages)
    seconds = time.monotonic() - started
    used = cpu_seconds() - cpu
    return {"events": n, "seconds": round(seconds, 2), "events_per_s": round(n / seconds),
            "cpu_us_per_event": round(used / n * 1e6, 1), "rss_mib": round(rss_mib(), 1), "outputs": outputs}


def faust_alone(bootstrap: str, prefix: str, n: int) -> dict[str, Any]:
    """A Faust agent that takes and acks the records and does nothing else."""
    os.environ.update({"BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": f"{prefix}.raw", "BENCH_EVENTS": str(n)})
    import faust

    app = faust.App(f"{prefix}-faust-alone", broker=f"kafka://{bootstrap}", web_enabled=False,
                    datadir=f"/tmp/{prefix}-faust-alone", topic_replication_factor=1,
                    consumer_auto_offset_reset="earliest", stream_buffer_maxsize=8192)
    topic = app.topic(f"{prefix}.raw", value_type=bytes, value_serializer="raw", key_type=bytes,
                      key_serializer="raw")
    state: dict[str, Any] = {"n": 0, "t": 0.0, "cpu": 0.0}

    @app.agent(topic)
    async def take(stream: Any) -> None:
        async for events in stream.noack_take(1000, within=0.02):
            if not state["t"]:
                state["t"], state["cpu"] = time.monotonic(), cpu_seconds()
            state["n"] += len(events)
            for event in events:
                await stream.ack(event)
            if state["n"] >= n:
                seconds = time.monotonic() - state["t"]
                used = cpu_seconds() - state["cpu"]
                sys.__stdout__.write(json.dumps({  # type: ignore[union-attr]
                    "events": n, "seconds": round(seconds, 2), "events_per_s": round(n / seconds),
                    "cpu_us_per_event": round(used / n * 1e6, 1), "rss_mib": round(rss_mib(), 1),
                    "outputs": 0}) + "\n")
                sys.__stdout__.flush()  # type: ignore[union-attr]
                os._exit(0)

    worker = faust.Worker(app, loglevel="ERROR", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
    return {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--child", choices=["control", "faust_alone"])
    parser.add_argument("--bootstrap")
    parser.add_argument("--prefix")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated: kafka,faust,control,faust_alone (default: all)")
    parser.add_argument("--unpinned", action="store_true",
                        help="pin nothing: contender, its librdkafka threads and the broker share both cores")
    args = parser.parse_args()
    if args.child:
        runner = control if args.child == "control" else faust_alone
        print(json.dumps(runner(args.bootstrap, args.prefix, args.events)))
        return
    import tempfile

    kafka, bootstrap = start_kafka()
    try:
        if args.unpinned:
            PIN.clear()
        else:
            for node in kafka.status().nodes:
                if node.pid:
                    os.sched_setaffinity(node.pid, {0})
            os.sched_setaffinity(0, {0})
        records = corpus(args.events)
        folder = Path(tempfile.mkdtemp(prefix="bench-worker-"))
        config = folder / "eventrouter.yaml"
        config.write_text(CONFIG)
        contenders = [("eventrouter worker (confluent-kafka engine, default)", "kafka"),
                      ("eventrouter worker --engine faust", "faust"),
                      ("control: plain confluent-kafka consume/route/produce loop", "control"),
                      ("Faust alone: take and ack, no work", "faust_alone")]
        contenders = [(n, k) for n, k in contenders if not args.only or k in args.only.split(",")]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in contenders}
        for round_ in range(args.rounds):  # interleaved, so a noisy minute hurts every contender alike
            for name, kind in contenders:
                prefix = f"bw{uuid.uuid4().hex[:8]}"
                preload(bootstrap, f"{prefix}.raw", records)
                row = run_worker(bootstrap, prefix, args.events, kind, config) if kind in ("kafka", "faust") \
                    else run_child(kind, bootstrap, prefix, args.events)
                runs[name].append(row)
                print(f"round {round_ + 1}: {name}: {row}", flush=True)
        rows = {name: sorted(rs, key=lambda r: r["events_per_s"])[len(rs) // 2] for name, rs in runs.items()}
        lines = ["| one process on 1 core, 3 integrations | events/s (median) | range | CPU per event | outputs "
                 "| peak RSS |", "|---|---|---|---|---|---|"]
        for name, row in rows.items():
            rates = [r["events_per_s"] for r in runs[name]]
            lines.append(f"| {name} | {row['events_per_s']:,} | {min(rates):,}-{max(rates):,} | "
                         f"{row['cpu_us_per_event']} us | {int(row['outputs']):,} | {row['rss_mib']} MiB |")
        if args.only or args.unpinned:
            print("\n".join(lines))
        else:
            write_result("worker", {"events": args.events, "rounds": args.rounds, "rows": rows, "runs": runs},
                         "\n".join(lines))
    finally:
        kafka.stop()


if __name__ == "__main__":
    main()
