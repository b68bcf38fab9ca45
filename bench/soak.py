"""Memory over a long run: the whole chain of bench/chain.py (SDK -> Kafka -> worker -> three forwarders
-> stand-ins) fed at a fixed rate for ten minutes, every process's resident memory (VmRSS) sampled
every 15 s. The target: each Python process <= 150 MiB and no
growth over a 10-minute soak. Also per minute: latency at Amplitude (from each event's scheduled send
time), and at the end every event accounted for by messageId at all three vendors.

    python -m bench.soak [--rate 2000] [--minutes 10] [--worker-args="--dedup-memory-keys 1000000000"]

The worker's dedup state is the one structure that grows with traffic (a messageId per event, kept
for the 24 h window); `--worker-args` runs the same soak with another memory limit for it.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.chain import CONFIG, ENV, REPO, events, stand_ins
from bench.common import cpu_seconds, percentile, rss_mib, start_kafka, until_arrived, write_result

EVERY_S = 15.0


def child_sdk(bootstrap: str, topic: str, rate: float, seconds: float, tag: str) -> dict[str, Any]:
    """Open loop at `rate` for `seconds`: a corpus of 20,000 calls sent over and over, messageId `tag-i`."""
    from producers import Analytics

    corpus = events(20_000, tag)
    analytics = Analytics("wk_bench", bootstrap, topic=topic)
    n = int(rate * seconds)
    t0 = time.time()
    print(json.dumps({"t0": t0}), flush=True)
    for i in range(n):
        wait = t0 + i / rate - time.time()
        if wait > 0.002:
            time.sleep(wait)
        e = corpus[i % len(corpus)]
        analytics.track(e["userId"], e["event"], e["properties"], context=e["context"], message_id=f"{tag}-{i}")
    pending = analytics.flush(120)
    stats = analytics.stats()
    analytics.close()
    return {"t0": t0, "sent": n, "pending": pending, "acked": stats["acked"], "failed": stats["failed"]}


def sample(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for role, pid in pids.items():
        try:
            out[role] = round(rss_mib(pid, now=True), 1)
        except OSError:
            out[role] = 0.0
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--worker-args", default="", help="more `eventrouter worker` options, one string")
    parser.add_argument("--child-sdk", nargs=4, metavar=("BOOTSTRAP", "TOPIC", "RATE", "SECONDS"))
    args = parser.parse_args()
    if args.child_sdk:
        bootstrap, topic, rate, seconds = args.child_sdk
        print(json.dumps(child_sdk(bootstrap, topic, float(rate), float(seconds), "soak")), flush=True)
        return

    from eventrouter.stack import Stack
    from schemas import Topics
    from schemas.runtime.revisions import ConfigStore
    from streams.metrics import scrape

    kafka, bootstrap = start_kafka(full_jit=True)
    vendors = stand_ins()
    folder = Path(tempfile.mkdtemp(prefix="eventrouter-bench-soak-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config = folder / "eventrouter.yaml"
    config.write_text(CONFIG.format(**{name: s.url for name, s in vendors.items()}))
    topics = Topics(f"k{uuid.uuid4().hex[:6]}")
    seconds = args.minutes * 60
    samples: list[tuple[float, dict[str, float]]] = []
    try:
        ConfigStore(bootstrap, topics).apply(config)
        stack = Stack(bootstrap, topics, config, folder, gateway_port=None, env=ENV, partitions=6,
                      worker_args=shlex.split(args.worker_args)).start()
        broker = kafka.status().nodes[0].pid
        try:
            sdk = subprocess.Popen([sys.executable, "-m", "bench.soak", "--child-sdk", bootstrap, topics.raw,
                                    str(args.rate), str(seconds)], cwd=REPO, stdout=subprocess.PIPE, text=True)
            assert sdk.stdout is not None
            t0 = float(json.loads(sdk.stdout.readline())["t0"])
            pids = {c.role: c.process.pid for c in stack.children} | {"sdk": sdk.pid} | (
                {"broker": broker} if broker else {})
            cpu0 = {role: cpu_seconds(pid) for role, pid in pids.items()}
            while sdk.poll() is None:
                time.sleep(EVERY_S - (time.time() - t0) % EVERY_S)
                if sdk.poll() is None:
                    samples.append((time.time() - t0, sample(pids)))
                    print(f"{samples[-1][0]:.0f} s: {samples[-1][1]}", flush=True)
            cpu = {role: cpu_seconds(pid) - cpu0[role] for role, pid in pids.items() if role != "sdk"}
            result = json.loads(sdk.stdout.read().strip().splitlines()[-1])
            worker = next(c for c in stack.children if c.role == "worker-1")
            metrics = scrape(worker.metrics_port) if worker.metrics_port else {}
            dedup = {where: metrics.get(f'eventrouter_worker_dedup_keys{{where="{where}"}}', 0.0)
                     for where in ("memory", "disk")}
            expected = {f"soak-{i}" for i in range(result["sent"])}
            until_arrived({name: v.arrived for name, v in vendors.items()}, expected, {}, timeout=300)
        finally:
            stack.stop()
    finally:
        kafka.stop()
        for stand_in in vendors.values():
            stand_in.stop()
    lost = {name: len(expected - v.arrived.keys()) for name, v in vendors.items()}
    per_minute: dict[int, list[float]] = {}
    for key, arrived in vendors["amplitude"].arrived.items():
        i = int(key.rsplit("-", 1)[1])
        per_minute.setdefault(int(i / args.rate // 60), []).append(arrived - (t0 + i / args.rate))
    minute = lambda at: int(max(0.0, at - 1) // 60)  # noqa: E731 - a sample at 600 s ends minute 10
    minutes = sorted({minute(at) for at, _ in samples})
    last_in = {m: next(s for at, s in reversed(samples) if minute(at) == m) for m in minutes}
    roles = list(samples[-1][1])
    first = last_in[minutes[1] if len(minutes) > 1 else minutes[0]]
    lines = [f"Soak: {args.rate:,.0f} events/s for {args.minutes:g} min, worker options "
             f"`{args.worker_args or '(defaults)'}`. Sent {result['sent']:,}; lost per vendor {lost}; "
             f"worker dedup state at the end: {dedup['memory']:,.0f} messageIds in memory, "
             f"{dedup['disk']:,.0f} on disk.",
             "", "| RSS MiB (VmRSS) at the end of minute | " + " | ".join(str(m + 1) for m in minutes)
             + " | growth from minute 2 | peak |", "|---|" + "---|" * (len(minutes) + 2)]
    for role in roles:
        peak = max(s.get(role, 0.0) for _, s in samples)
        lines.append(f"| {role} | " + " | ".join(f"{last_in[m].get(role, 0.0):.0f}" for m in minutes)
                     + f" | {last_in[minutes[-1]][role] - first[role]:+.1f} | {peak:.0f} |")
    lines += ["", "| Amplitude latency per minute of schedule | " + " | ".join(str(m + 1) for m in sorted(per_minute))
              + " |", "|---|" + "---|" * len(per_minute),
              "| p50 / p99 ms | " + " | ".join(f"{percentile(v, 50) * 1000:.0f} / {percentile(v, 99) * 1000:.0f}"
                                              for _, v in sorted(per_minute.items())) + " |",
              "", "CPU-ms per 1k events over the soak: " + ", ".join(
                  f"{role} {s / result['sent'] * 1e6:.0f}" for role, s in cpu.items())]
    slug = "_".join("".join(c if c.isalnum() else " " for c in args.worker_args).split())
    write_result(f"soak_{slug}"[:60] if slug else "soak",
                 {"rate": args.rate, "minutes": args.minutes, "worker_args": args.worker_args, "sent": result["sent"],
                  "lost": lost, "dedup_keys": dedup, "cpu_s": cpu, "samples": samples}, "\n".join(lines))


if __name__ == "__main__":
    main()
