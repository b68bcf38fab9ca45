"""The whole chain on this machine: SDK -> Kafka -> stream worker -> three forwarders (Amplitude,
Mixpanel, Meta CAPI starter kits) -> vendor stand-ins, every process and the broker on the same cores.
Side by side in one run:

- ours, as fast as the SDK can send (sustained events/s with every event accounted for by messageId at
  the vendors), then open-loop at fixed rates (latency from each event's scheduled send time to its
  arrival at each vendor: no coordinated omission);
- the raw Kafka pass-through of the same Avro bytes (confluent-kafka produce -> consume, no work): the
  limit here;
- a naive pipeline: JSON through kafka-python, the same playbooks, one HTTP request per event per vendor;
- the same chain with the workers on the Faust engine (`--engine faust`), after the default one.

Per process: CPU-ms per 1,000 events (from /proc) and peak RSS. The stand-ins run in this process.

    python -m bench.chain [--events 40000] [--rates 1000,3000,5000,8000,10000,12000] [--seconds 15]
                          [--naive-events 2000] [--engines kafka,faust] [--faust-rates 1000,3000,5000,8000]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.calibrate import machine_us
from bench.common import (
    cpu_seconds,
    machine_ticks,
    percentile,
    produce_all,
    rss_mib,
    start_kafka,
    steal_pct,
    track_corpus,
    until_arrived,
    write_result,
)
from bench.hops import ends, hops, written

REPO = Path(__file__).resolve().parents[1]
VENDORS = ("amplitude", "mixpanel", "meta")
ENV = {"BENCH_AMP_KEY": "amp-key", "BENCH_MP_SECRET": "mp-secret", "BENCH_META_TOKEN": "meta-token",
       "EVENTROUTER_PRIVATE_NETWORKS": "127.0.0.0/8"}  # the stand-ins, on loopback (forwarders/ssrf.py)
CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk_bench], integrations: [amplitude, mixpanel, meta]}}
integrations:
  - {{name: amplitude, kind: amplitude, playbook: "starter:amplitude", delivery: {{linger_ms: 25}},
     connection: {{api_key: "${{BENCH_AMP_KEY}}", endpoint: "{amplitude}/2/httpapi",
                   allow_http: true, allow_private: true}}}}
  - {{name: mixpanel, kind: mixpanel, playbook: "starter:mixpanel", delivery: {{linger_ms: 25}},
     connection: {{project_id: "42", username: sa.user, secret: "${{BENCH_MP_SECRET}}",
                   endpoint: "{mixpanel}/import", allow_http: true, allow_private: true}}}}
  - {{name: meta, kind: meta_capi, playbook: "starter:meta_capi", delivery: {{linger_ms: 25}},
     connection: {{pixel_id: "1234567890", access_token: "${{BENCH_META_TOKEN}}", endpoint: "{meta}",
                   allow_http: true, allow_private: true}}}}
"""


def events(n: int, tag: str) -> list[dict[str, Any]]:
    """n server-side `track` calls (what all three starter kits send on), messageId `tag-i`."""
    out = []
    for i, (user, _name, properties) in enumerate(track_corpus(n)):
        out.append({"type": "track", "event": "Order Completed", "userId": user, "properties": properties,
                    "messageId": f"{tag}-{i}", "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0",
                                                           "traits": {"email": f"{user}@example.com"}}})
    return out


# -- stand-ins that note when each event arrived ----------------------------------------------------
def stand_ins() -> dict[str, Any]:
    from eventrouter.dev.standins import AmplitudeStandIn, MetaStandIn, MixpanelStandIn

    def timed(cls: Any) -> Any:
        class Timed(cls):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                super().__init__()
                self.arrived: dict[str, float] = {}

            def accept(self, event: dict[str, Any], key: str | None) -> None:
                # Only when each event came, not the event: kept events (hundreds of thousands of dicts) made
                # this process's garbage collector stop every stand-in for up to a second at a time.
                if key is not None:  # Meta's key is event_id:event_name
                    self.arrived.setdefault(key.split(":")[0], time.time())
        return Timed().start()
    return {"amplitude": timed(AmplitudeStandIn), "mixpanel": timed(MixpanelStandIn), "meta": timed(MetaStandIn)}


# -- children: the load and the baselines --------------------------------------------------------------
def child_sdk(bootstrap: str, topic: str, n: int, rate: float, tag: str) -> dict[str, Any]:
    """Open loop: event i is due at t0 + i/rate (rate 0: as fast as possible)."""
    from producers import Analytics

    corpus = events(n, tag)
    analytics = Analytics("wk_bench", bootstrap, topic=topic)
    warm = events(1, f"{tag}warm")[0]  # connected, with its producer id, before the clock starts
    analytics.track(warm["userId"], warm["event"], warm["properties"], context=warm["context"],
                    message_id=warm["messageId"])
    analytics.flush(30)
    cpu0, t0 = cpu_seconds(), time.time()
    for i, e in enumerate(corpus):
        if rate:  # paced in steps of 2 ms: a sleep per event or two cost the SDK's process ~0.1 core at 5k/s
            wait = t0 + i / rate - time.time()
            if wait > 0.002:
                time.sleep(wait)
        analytics.track(e["userId"], e["event"], e["properties"], context=e["context"], message_id=e["messageId"])
    pending = analytics.flush(120)
    stats = analytics.stats()
    analytics.close()
    return {"t0": t0, "sent_s": time.time() - t0, "pending": pending, "acked": stats["acked"],
            "failed": stats["failed"], "cpu_s": cpu_seconds() - cpu0, "rss_mib": rss_mib()}


def child_passthrough(bootstrap: str, n: int) -> dict[str, Any]:
    """The same Avro bytes produced and consumed by confluent-kafka, nothing else."""
    import threading

    from confluent_kafka import Consumer, Producer

    from schemas import EventCodec
    from schemas.runtime.kafka import consumer_settings, ensure_topics, producer_settings

    topic = f"pass-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic], partitions=6)
    codec = EventCodec()
    values = [(e["userId"].encode(), codec.encode({**e, "writeKey": "wk_bench"})) for e in events(n, "p")]
    consumer = Consumer(consumer_settings(bootstrap, f"pass-{uuid.uuid4().hex[:6]}", {"enable.auto.commit": False}))
    consumer.subscribe([topic])
    consumer.consume(timeout=3.0)  # joined before the clock starts
    cpu0, t0 = cpu_seconds(), time.time()

    def produce() -> None:
        producer = Producer(producer_settings(bootstrap, {"linger.ms": 5}))
        produce_all(producer, topic, values, pause=0.05)
        producer.flush(60)
    thread = threading.Thread(target=produce)
    thread.start()
    seen = 0
    while seen < n and time.time() - t0 < 300:
        seen += sum(1 for m in consumer.consume(num_messages=1000, timeout=1.0) if m.error() is None)
    seconds = time.time() - t0
    thread.join()
    consumer.close()
    return {"events": seen, "seconds": seconds, "cpu_s": cpu_seconds() - cpu0, "rss_mib": rss_mib()}


def child_naive(bootstrap: str, n: int, urls: dict[str, str]) -> dict[str, Any]:
    """kafka-python and JSON; the same playbooks and vendor request shapes, one request per event per vendor."""
    import orjson
    import requests
    from kafka import KafkaConsumer, KafkaProducer

    from forwarders.ssrf import operator_networks
    from forwarders.vendors import Item, vendor_for
    from schemas.config import parse_config
    from schemas.playbook.route import Route
    from schemas.runtime.kafka import ensure_topics

    config = parse_config(CONFIG.format(**urls))
    routes = [(Route(i), vendor_for(i.kind, {k: ENV.get(v[2:-1], v) if isinstance(v, str) and v.startswith("${")
                                            else v for k, v in i.connection.items()}, operator_networks(ENV)))
              for i in config.integrations]
    topic = f"naive-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic], partitions=6)  # the broker does not create topics on first use
    corpus = events(n, "naive")
    producer = KafkaProducer(bootstrap_servers=bootstrap, value_serializer=lambda v: json.dumps(v).encode())
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"naive-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", value_deserializer=json.loads)
    session = requests.Session()
    cpu0, t0 = cpu_seconds(), time.time()
    for event in corpus:
        producer.send(topic, {**event, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    producer.flush()
    done = 0
    while done < n and time.time() - t0 < 600:
        for records in consumer.poll(timeout_ms=1000).values():
            for record in records:
                event = record.value
                for route, vendor in routes:
                    outcome = route.decide(event)
                    if outcome.payload is None:
                        continue
                    item = Item(event["messageId"], orjson.loads(orjson.dumps(outcome.payload)),
                                outcome.event_name, timestamp_ms=int(time.time() * 1000))
                    for request in vendor.build([item]).requests:
                        session.post(request.url, data=request.body, headers=dict(request.headers), timeout=10)
                done += 1
    return {"events": done, "seconds": time.time() - t0, "cpu_s": cpu_seconds() - cpu0, "rss_mib": rss_mib()}


def run_child(*args: str, timeout: float = 900) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.chain", "--child", *args], cwd=REPO, capture_output=True,
                         text=True, timeout=timeout)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"child {args[0]} failed: {out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# -- ours ----------------------------------------------------------------------------------------------
def _until_quiet(pid: int | None, timeout: float = 120.0) -> None:
    """Until process `pid` (the broker: its JIT compiler) uses under 5% of a core for 2 s."""
    deadline = time.time() + timeout
    while pid and time.time() < deadline:
        before = cpu_seconds(pid)
        time.sleep(2.0)
        if cpu_seconds(pid) - before < 0.1:
            return


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for role, pid in pids.items():
        try:
            out[role] = cpu_seconds(pid)
        except OSError:
            out[role] = 0.0
    return out


def run_ours(bootstrap: str, topic: str, pids: dict[str, int], vendors: dict[str, Any], *, n: int, rate: float,
             tag: str, hop_topic: str, partitions: int) -> dict[str, Any]:
    starts = ends(bootstrap, [topic, hop_topic], partitions)
    before, own, ticks = _cpu(pids), cpu_seconds(), machine_ticks()
    counts = {name: len(v.arrived) for name, v in vendors.items()}
    sdk = run_child("sdk", bootstrap, topic, str(n), str(rate), tag)
    expected = {f"{tag}-{i}" for i in range(n)}
    until_arrived({name: v.arrived for name, v in vendors.items()}, expected, counts, timeout=300)
    after, own, stolen = _cpu(pids), cpu_seconds() - own, steal_pct(ticks, machine_ticks())
    cpu = {role: after[role] - before[role] for role in pids}
    cpu["sdk"] = sdk["cpu_s"]
    t0 = sdk["t0"]
    latencies: list[float] = []
    lost = {}
    per_vendor = {}
    last = t0
    for name, stand_in in vendors.items():
        got = expected & stand_in.arrived.keys()
        lost[name] = len(expected - got)
        mine = []
        for key in got:
            i = int(key.rsplit("-", 1)[1])
            arrived = stand_in.arrived[key]
            mine.append(arrived - (t0 + (i / rate if rate else 0.0)))
            last = max(last, arrived)
        latencies += mine
        if rate and name == "amplitude":  # where the slow ones were sent: the worst latency per second of schedule
            worst: dict[int, float] = {}
            for key in got:
                i = int(key.rsplit("-", 1)[1])
                second = int(i / rate)
                worst[second] = max(worst.get(second, 0.0), stand_in.arrived[key] - (t0 + i / rate))
            print(f"  {tag} amplitude worst latency per second (ms): "
                  + " ".join(f"{worst[k] * 1000:.0f}" for k in sorted(worst)), flush=True)
        per_vendor[name] = f"p50 {percentile(mine, 50) * 1000:.0f} ms, p99 {percentile(mine, 99) * 1000:.0f} ms"
    seconds = last - t0
    written_at = written(bootstrap, starts)
    scheduled = {f"{tag}-{i}": t0 + (i / rate if rate else 0.0) for i in range(n)}
    per_hop = hops(scheduled, written_at, vendors["amplitude"].arrived, topic, hop_topic)
    # kept up: the last event arrived soon after it was sent, not seconds later behind a growing backlog
    tail_s = round(last - (t0 + (n - 1) / rate), 2) if rate else None
    return {"events": n, "rate": rate, "seconds": round(seconds, 2), "events_per_s": round(n / seconds),
            "tail_s": tail_s,
            "delivered": {k: n - v for k, v in lost.items()}, "lost": sum(lost.values()),
            "sdk_failed": sdk["failed"], "sdk_acked": sdk["acked"],
            "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "per_vendor": per_vendor, "hops_amplitude": per_hop,
            "cpu_ms_per_1k": {role: round(s / n * 1e6, 1) for role, s in cpu.items()},
            "cpu_ms_per_1k_total": round(sum(cpu.values()) / n * 1e6, 1),
            "stand_ins_cpu_ms_per_1k": round(own / n * 1e6, 1),  # this process: the stand-ins, not ours
            "sdk_rss_mib": round(sdk["rss_mib"], 1), "steal_pct": stolen}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=40_000, help="the as-fast-as-possible run")
    parser.add_argument("--rates", default="1000,3000,5000,8000,10000,12000",
                        help="open-loop rates (events/s): latency, and whether the chain keeps up")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each fixed-rate run")
    parser.add_argument("--naive-events", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=60_000,
                        help="events sent as fast as possible, then at 2,000/s, before measuring")
    parser.add_argument("--partitions", type=int, default=6, help="of every topic of ours (6: the default)")
    parser.add_argument("--engines", default="kafka,faust", help="the workers' engines, one after the other")
    parser.add_argument("--faust-rates", default="1000,3000,5000,8000", help="the open-loop rates of the faust engine")
    parser.add_argument("--ours-only", action="store_true", help="no pass-through, no naive run, no result file")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        kind, rest = args.child[0], args.child[1:]
        if kind == "sdk":
            result = child_sdk(rest[0], rest[1], int(rest[2]), float(rest[3]), rest[4])
        elif kind == "passthrough":
            result = child_passthrough(rest[0], int(rest[1]))
        else:
            result = child_naive(rest[0], int(rest[1]), json.loads(rest[2]))
        print(json.dumps(result))
        return

    kafka, bootstrap = start_kafka(full_jit=True)
    vendors = stand_ins()
    folder = Path(tempfile.mkdtemp(prefix="eventrouter-bench-chain-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # the config and the processes' logs
    urls = {name: s.url for name, s in vendors.items()}
    config = folder / "eventrouter.yaml"
    config.write_text(CONFIG.format(**urls))
    engines: dict[str, dict[str, Any]] = {}
    try:
        for engine in args.engines.split(","):
            rates = args.rates if engine == "kafka" else args.faust_rates
            engines[engine] = run_engine(engine, kafka, bootstrap, vendors, folder=folder / engine, config=config,
                                          args=args, rates=rates)
        if args.ours_only:
            return
        passthrough = run_child("passthrough", bootstrap, str(args.events))
        print("passthrough", passthrough, flush=True)
        naive = run_child("naive", bootstrap, str(args.naive_events), json.dumps(urls))
        print("naive", naive, flush=True)
    finally:
        kafka.stop()
        for stand_in in vendors.values():
            stand_in.stop()
    runs, rss = engines["kafka"]["runs"], engines["kafka"]["rss_mib"]
    top = runs[0]
    pass_rate = passthrough["events"] / passthrough["seconds"]
    naive_rate = naive["events"] / naive["seconds"]
    lines = ["| pipeline (every process and the broker on this machine's 2 cores) | events/s | last event in, after "
             "its send | lost | p50 | p99 | CPU-ms per 1k events (all processes) | CPU stolen by the host "
             "| machine: routing one event, one core |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| eventrouter: SDK -> Kafka -> worker -> 3 forwarders -> 3 vendors, a burst of {args.events:,} "
             f"drained as fast as possible | "
             f"{top['events_per_s']:,} | - | {top['lost']} | {top['p50_ms']:.0f} ms | {top['p99_ms']:.0f} ms | "
             f"{top['cpu_ms_per_1k_total']:.0f} | {top['steal_pct']:g}% | {top['calibration_us']:g} us |"]
    for run in runs[1:]:
        lines.append(f"| eventrouter, open loop at {run['rate']:,.0f} events/s for {args.seconds:g} s | "
                     f"{run['events_per_s']:,} | {run['tail_s']:.2f} s | {run['lost']} | {run['p50_ms']:.0f} ms | "
                     f"{run['p99_ms']:.0f} ms | "
                     f"{run['cpu_ms_per_1k_total']:.0f} | {run['steal_pct']:g}% | {run['calibration_us']:g} us |")
    alone = "(one process; broker not counted) | - | - |"
    lines += [f"| raw Kafka pass-through of the same bytes (confluent-kafka, no work) | {pass_rate:,.0f} | - | - | - | "
              f"- | {passthrough['cpu_s'] / passthrough['events'] * 1e6:.0f} {alone}",
              f"| naive: JSON + kafka-python + one request per event per vendor, same playbooks | {naive_rate:,.0f} "
              f"| - | - | - | - | {naive['cpu_s'] / naive['events'] * 1e6:.0f} {alone}",
              "", f"ours / naive: {top['events_per_s'] / naive_rate:.1f}x; ours / raw pass-through: "
              f"{top['events_per_s'] / pass_rate:.2f}", "",
              "| process | " + " | ".join(top["cpu_ms_per_1k"]) + " |",
              "|---|" + "---|" * len(top["cpu_ms_per_1k"]),
              "| CPU-ms per 1k events (max run) | " + " | ".join(f"{v:.0f}" for v in top["cpu_ms_per_1k"].values())
              + " |", "| peak RSS MiB | " + " | ".join(str(rss.get(k, top["sdk_rss_mib"] if k == "sdk" else "-"))
                                                   for k in top["cpu_ms_per_1k"]) + " |",
              "", "| run (per hop, to Amplitude) | " + " | ".join(top["hops_amplitude"])
              + " | stand-ins' CPU-ms per 1k (not counted above) |",
              "|---|" + "---|" * (len(top["hops_amplitude"]) + 1)]
    for run in runs:
        label = f"open loop at {run['rate']:,.0f}/s" if run["rate"] else "as fast as possible"
        lines.append(f"| {label} | " + " | ".join(run["hops_amplitude"].values())
                     + f" | {run['stand_ins_cpu_ms_per_1k']:.0f} |")
    lines += ["", *engine_table(engines)]
    write_result("chain", {"runs": runs, "passthrough": passthrough, "naive": naive, "rss_mib": rss,
                           "engines": engines, "os": os.uname().release}, "\n".join(lines))


def run_engine(engine: str, kafka: Any, bootstrap: str, vendors: dict[str, Any], *, folder: Path, config: Path,
               args: argparse.Namespace, rates: str) -> dict[str, Any]:
    """The chain with the workers on `engine` (topics of its own): warmed up, then as fast as possible and
    open loop at each of `rates`; its runs and each process's peak RSS."""
    from eventrouter.stack import Stack
    from schemas import Topics
    from schemas.runtime.kafka import ensure_topics
    from schemas.runtime.revisions import ConfigStore

    topics = Topics(f"c{uuid.uuid4().hex[:6]}")
    ConfigStore(bootstrap, topics).apply(config)
    # made here, not left to the processes: a consumer that asked for a topic's offsets before the topic
    # existed kept it as unknown for 30 s (the first run's `ends` failed when the forwarders started late)
    ensure_topics(bootstrap, [topics.raw, *(topics.integration(v) for v in VENDORS)], partitions=args.partitions)
    stack = Stack(bootstrap, topics, config, folder, gateway_port=None, env=ENV, partitions=args.partitions,
                  engine=engine).start()
    broker = kafka.status().nodes[0].pid
    pids = {c.role: c.process.pid for c in stack.children} | ({"broker": broker} if broker else {})
    runs = []
    try:
        ours: dict[str, Any] = {"bootstrap": bootstrap, "topic": topics.raw, "pids": pids, "vendors": vendors,
                                "hop_topic": topics.integration("amplitude"), "partitions": args.partitions}
        # The broker's JIT compiles its hot code over the first minutes under load (its CPU per request
        # at 1k events/s fell fourfold over 40 s): as fast as possible, then steady, then until it is quiet.
        run_ours(**ours, n=args.warm_up, rate=0, tag=f"warm-{engine}")
        run_ours(**ours, n=args.warm_up, rate=2000, tag=f"warm-steady-{engine}")
        _until_quiet(broker)
        print(f"{engine} engine: warm-up done", flush=True)
        calibration = (config.read_text(), events(2000, "calibrate"))
        for index, rate in enumerate([0.0, *(float(r) for r in rates.split(","))]):
            speed = machine_us(*calibration)  # the machine's speed just before the run (bench/calibrate.py)
            runs.append(run_ours(**ours, n=int(rate * args.seconds) if rate else args.events, rate=rate,
                                 tag=f"{engine}-r{rate:g}-{index}" if rate else f"{engine}-max")
                        | {"calibration_us": speed, "engine": engine})
            print(runs[-1], flush=True)
        rss = {c.role: round(rss_mib(c.process.pid), 1) for c in stack.children}
        if broker:
            rss["broker"] = round(rss_mib(broker), 1)
    finally:
        stack.stop()
    return {"runs": runs, "rss_mib": rss}


def engine_table(engines: dict[str, dict[str, Any]]) -> list[str]:
    """The engines side by side: the burst, and each open-loop rate both ran."""
    out = ["| workers' engine | run | events/s | last event in, after its send | lost | p99 | CPU-ms per 1k "
           "events (all processes) | worker CPU-ms per 1k | worker peak RSS MiB |",
           "|---|---|---|---|---|---|---|---|---|"]
    for engine, result in engines.items():
        for run in result["runs"]:
            label = f"open loop at {run['rate']:,.0f}/s" if run["rate"] else "burst, as fast as possible"
            tail = f"{run['tail_s']:.2f} s" if run["tail_s"] is not None else "-"
            out.append(f"| {engine} | {label} | {run['events_per_s']:,} | {tail} | {run['lost']} | "
                       f"{run['p99_ms']:.0f} ms | {run['cpu_ms_per_1k_total']:.0f} | "
                       f"{run['cpu_ms_per_1k'].get('worker-1', 0):.0f} | {result['rss_mib'].get('worker-1', '-')} |")
    return out


if __name__ == "__main__":
    main()
