"""Many integrations per forwarder process: 20 integrations in one `eventrouter forward` process, side by
side in one run with one process per integration (the same config, topics of their own for each).

For each: idle (every integration assigned, nothing to deliver) for `--idle` seconds, the CPU of the
forwarder processes (in cores) and of the broker, and their total RSS; then open loop at `--rate` events/s
in all (spread over the 20 integrations, each event due at t0 + i/rate) for `--seconds`: CPU-ms per 1,000
events (the forwarders), and latency from each event's due time to its arrival at the vendor stand-in
(p50, p99). The 20 integrations are Amplitude integrations (batching, the default linger of 200 ms) to one
stand-in in this process; every process and the broker share this machine's 2 cores, unpinned.

    python -m bench.forwarder_host [--integrations 20] [--idle 60] [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, percentile, rss_mib, start_kafka, write_result
from bench.forwarder import ENV, outbound

REPO = Path(__file__).resolve().parents[1]


def config_text(names: list[str], url: str) -> str:
    lines = ["pipelines:", f"  - {{name: web, write_keys: [wk], integrations: [{', '.join(names)}]}}", "integrations:"]
    for name in names:
        lines += [f"  - name: {name}", "    kind: amplitude",
                  f'    connection: {{api_key: "${{BENCH_AMP_KEY}}", endpoint: "{url}/2/httpapi", allow_http: true, '
                  "allow_private: true}", '    playbook: "starter:amplitude"']
    return "\n".join(lines) + "\n"


def timed_stand_in() -> Any:
    from eventrouter.dev.standins import AmplitudeStandIn

    class Timed(AmplitudeStandIn):
        def __init__(self) -> None:
            super().__init__()
            self.arrived: dict[str, float] = {}

        def accept(self, event: dict[str, Any], key: str | None) -> None:  # when, not what (kept small)
            if key is not None:
                self.arrived.setdefault(key, time.time())
    return Timed().start()


def start(mode: str, bootstrap: str, prefix: str, config: Path, *, names: list[str], folder: Path
          ) -> list[tuple[subprocess.Popen[bytes], Path]]:
    groups = [names] if mode == "one process" else [[name] for name in names]
    started = []
    for index, group in enumerate(groups):
        log = folder / f"{prefix}-{index}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", "eventrouter", "forward", *group, "--bootstrap-servers",
                                        bootstrap, "--topic-prefix", prefix, "--config", str(config),
                                        "--data-dir", str(folder / f"{prefix}-data-{index}")],
                                       cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV})
        started.append((process, log))
    return started


def all_assigned(started: list[tuple[subprocess.Popen[bytes], Path]], names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = "".join(log.read_text(errors="replace") for _process, log in started)
        if all(re.search(rf"\b{name}: assigned \[.+\]", text) for name in names):
            return
        if any(process.poll() is not None for process, _log in started):
            raise RuntimeError("a forwarder exited")
        time.sleep(0.5)
    raise TimeoutError("not every integration was assigned its partitions")


def load(bootstrap: str, prefix: str, names: list[str], rate: float, seconds: float) -> dict[str, float]:
    """Open loop: event i to integration i % len(names), due at t0 + i/rate; messageId -> due time."""
    from confluent_kafka import Producer

    from schemas import Topics, outbound_codec
    from schemas.runtime.kafka import producer_settings

    codec, topics = outbound_codec(), Topics(prefix)
    producer = Producer(producer_settings(bootstrap, {"linger.ms": 5}))
    due: dict[str, float] = {}
    t0 = time.time() + 0.5
    for i in range(int(rate * seconds)):
        name = names[i % len(names)]
        at = t0 + i / rate
        wait = at - time.time()
        if wait > 0:
            time.sleep(wait)
        record = outbound("amplitude", i, int(time.time() * 1000)) | {"integration": name}
        producer.produce(topics.integration(name), codec.encode(record), record["userId"].encode())
        producer.poll(0)
        due[record["messageId"]] = at
    producer.flush(30)
    return due


def run_mode(mode: str, bootstrap: str, names: list[str], stand_in: Any, *, folder: Path, broker: int | None,
             args: argparse.Namespace) -> dict[str, Any]:
    from schemas import Topics
    from schemas.runtime.kafka import ensure_topics

    prefix = f"h{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    ensure_topics(bootstrap, [topics.integration(n) for n in names], partitions=6)
    config = folder / f"{prefix}.yaml"
    config.write_text(config_text(names, stand_in.url))
    started = start(mode, bootstrap, prefix, config, names=names, folder=folder)
    pids = [process.pid for process, _log in started]
    try:
        all_assigned(started, names, timeout=300)
        time.sleep(5)
        cpu0, broker0, t0 = sum(cpu_seconds(p) for p in pids), cpu_seconds(broker) if broker else 0.0, time.monotonic()
        time.sleep(args.idle)
        idle_s = time.monotonic() - t0
        idle = {"cores": round((sum(cpu_seconds(p) for p in pids) - cpu0) / idle_s, 4),
                "broker_cores": round(((cpu_seconds(broker) if broker else 0.0) - broker0) / idle_s, 4),
                "rss_mib": round(sum(rss_mib(p, now=True) for p in pids), 1)}
        print(mode, "idle", idle, flush=True)
        cpu0 = sum(cpu_seconds(p) for p in pids)
        due: dict[str, float] = {}
        producer = threading.Thread(target=lambda: due.update(load(bootstrap, prefix, names, args.rate, args.seconds)))
        producer.start()
        producer.join()
        deadline = time.time() + 120
        while time.time() < deadline and not set(due) <= stand_in.arrived.keys():
            time.sleep(0.2)
        lost = len(set(due) - stand_in.arrived.keys())
        cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        latencies = [stand_in.arrived[m] - at for m, at in due.items() if m in stand_in.arrived]
        loaded = {"events": len(due), "lost": lost, "cpu_ms_per_1k": round(cpu / len(due) * 1e6, 1),
                  "p50_ms": round(percentile(latencies, 50) * 1000, 1),
                  "p99_ms": round(percentile(latencies, 99) * 1000, 1),
                  "peak_rss_mib": round(sum(rss_mib(p) for p in pids), 1)}
        print(mode, "at", args.rate, loaded, flush=True)
        return {"mode": mode, "processes": len(pids), "idle": idle, "loaded": loaded}
    finally:
        for process, _log in started:
            process.send_signal(signal.SIGTERM)
        for process, _log in started:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--integrations", type=int, default=20)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds measured idle")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s in all, open loop")
    parser.add_argument("--seconds", type=float, default=30.0, help="of the open loop")
    args = parser.parse_args()
    names = [f"amp{i:02d}" for i in range(1, args.integrations + 1)]
    kafka, bootstrap = start_kafka()
    stand_in = timed_stand_in()
    folder = Path(f"/tmp/eventrouter-bench-host-{uuid.uuid4().hex[:6]}")
    folder.mkdir()
    try:
        broker = kafka.status().nodes[0].pid
        runs = [run_mode(mode, bootstrap, names, stand_in, folder=folder, broker=broker, args=args)
                for mode in ("one process", "one process per integration")]
    finally:
        stand_in.stop()
        kafka.stop()
    lines = [f"{args.integrations} Amplitude integrations, every process and the broker on this machine's "
             f"{os.cpu_count()} cores; idle {args.idle:.0f} s, then open loop at {args.rate:,.0f} events/s in all "
             f"for {args.seconds:.0f} s", "",
             "| forwarders | processes | idle: CPU (cores) | idle: broker CPU (cores) | idle: RSS, all processes | "
             "CPU-ms per 1k events | p50 | p99 | lost | peak RSS under load |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        idle, loaded = run["idle"], run["loaded"]
        lines.append(f"| {run['mode']} | {run['processes']} | {idle['cores']:.3f} | {idle['broker_cores']:.3f} | "
                     f"{idle['rss_mib']:,.0f} MiB | {loaded['cpu_ms_per_1k']:.0f} | {loaded['p50_ms']:.0f} ms | "
                     f"{loaded['p99_ms']:.0f} ms | {loaded['lost']} | {loaded['peak_rss_mib']:,.0f} MiB |")
    write_result("forwarder_host", {"runs": runs, "integrations": args.integrations, "rate": args.rate,
                                    "idle_s": args.idle, "os": os.uname().release}, "\n".join(lines))


if __name__ == "__main__":
    main()
