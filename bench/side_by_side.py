"""Two or more revisions of one process, run at the same time on the same input: the CPU each spends per
event at a fixed rate. On this shared VM, runs one after another drift by more than the changes they
compare (the same code's CPU per event moved 10-40% within an hour); contenders that share the same
minutes share the drift.

    python -m bench.side_by_side forwarder c84a7d1 HEAD [--rate 5000] [--windows 4] [--seconds 15]
    python -m bench.side_by_side worker c84a7d1 HEAD [--rate 2500]
    python -m bench.side_by_side worker .:pure .     # this checkout as plain Python, and compiled

Each revision is checked out in a git worktree of its own (`.` is the checkout as it is, uncommitted
changes included) and its process runs from there, against one broker of this checkout's. A worktree of a
revision that has a compiled hot path gets it built first (eventrouter/dev/native.py, ~90 s), so compiled runs
against compiled; `REV:pure` runs a revision without it. `forwarder`:
an Amplitude forwarder per revision (linger 25 ms) reading a topic of its own, all fed the same Outbound
records, delivering to one counting stand-in. `worker`: a worker per revision (the chain's three starter
kits), each fed the same `track` calls by an SDK of this checkout's. Reported per window: CPU-us per event
of each contender (all its threads, from /proc); the median over the windows goes in the result.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chain import CONFIG as CHAIN_CONFIG
from bench.chain import ENV, events
from bench.common import cpu_seconds, start_kafka, write_result
from bench.forwarder import outbound

REPO = Path(__file__).resolve().parents[1]
FORWARDER_CONFIG = """
pipelines:
  - {{name: web, write_keys: [wk], integrations: [amplitude]}}
integrations:
  - {{name: amplitude, kind: amplitude, playbook: "starter:amplitude", delivery: {{linger_ms: 25}},
     connection: {{api_key: "${{BENCH_AMP_KEY}}", endpoint: "{url}/2/httpapi"{opt_in}}}}}
"""


def opt_in(path: Path) -> str:
    """The destination guard's opt-ins for a loopback stand-in, at a revision that has them (every vendor
    guarded); an older revision refuses them as unknown keys."""
    return ", allow_http: true, allow_private: true" if "allow_private" in \
        (path / "forwarders" / "vendors" / "base.py").read_text() else ""


def checkout(spec: str, under: Path) -> Path:
    rev = spec.removesuffix(":pure")
    if rev == ".":
        return REPO
    path = under / spec.replace("/", "_").replace(":", "_")
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    for build in ("eventrouter/dev/native.py", "eventrouter/native.py"):  # where the build lives at that revision
        if not spec.endswith(":pure") and (path / build).exists():
            subprocess.run([sys.executable, "-m", build.removesuffix(".py").replace("/", ".")], cwd=path, check=True)
            break
    return path


def env_of(spec: str) -> dict[str, str]:
    """`REV:pure`: that revision with its compiled modules left unused (schemas/native.py)."""
    return {**os.environ, **ENV, **({"EVENTROUTER_PURE": "1"} if spec.endswith(":pure") else {})}


def paced(rate: float, stop: threading.Event, send: Callable[[int], None]) -> None:
    """send(i) for i = 0, 1, ... at `rate` per second (in steps of 2 ms) until `stop`."""
    started, i = time.time(), 0
    while not stop.is_set():
        wait = started + i / rate - time.time()
        if wait > 0.002:
            time.sleep(wait)
        send(i)
        i += 1


def forwarders(bootstrap: str, revs: dict[str, Path], folder: Path) -> tuple[dict[str, Any], Callable[[int], None],
                                                                             Callable[[], None]]:
    from confluent_kafka import Producer

    from eventrouter.dev.standins import AmplitudeStandIn
    from schemas import outbound_codec
    from schemas.runtime.kafka import ensure_topics, producer_settings

    stand_in = AmplitudeStandIn().start()
    configs = {rev: folder / f"forwarder-{n}.yaml" for n, rev in enumerate(revs)}
    for rev, config in configs.items():
        config.write_text(FORWARDER_CONFIG.format(url=stand_in.url, opt_in=opt_in(revs[rev])))
    prefixes = {rev: f"s{uuid.uuid4().hex[:6]}" for rev in revs}
    topics = [f"{prefix}.out.amplitude" for prefix in prefixes.values()]
    ensure_topics(bootstrap, topics, partitions=6)
    processes = {rev: subprocess.Popen(
        [sys.executable, "-m", "eventrouter", "forward", "amplitude", "--bootstrap-servers", bootstrap,
         "--topic-prefix", prefixes[rev], "--config", str(configs[rev]), "--partitions", "6"], cwd=path,
        stdout=(folder / f"forward-{prefixes[rev]}.log").open("wb"), stderr=subprocess.STDOUT,
        env=env_of(rev)) for rev, path in revs.items()}
    codec = outbound_codec()
    producer = Producer(producer_settings(bootstrap, {"linger.ms": 5}))  # as the worker writes

    def send(i: int) -> None:
        value = codec.encode(outbound("amplitude", i, int(time.time() * 1000)))
        for topic in topics:
            producer.produce(topic, value, f"user-{i % 5000:05d}".encode())
        producer.poll(0)

    def close() -> None:
        producer.flush(30)
        stand_in.stop()
    return processes, send, close


def workers(bootstrap: str, revs: dict[str, Path], folder: Path) -> tuple[dict[str, Any], Callable[[int], None],
                                                                          Callable[[], None]]:
    from producers import Analytics
    from schemas import Topics
    from schemas.runtime.kafka import ensure_topics
    from schemas.runtime.revisions import ConfigStore

    text = CHAIN_CONFIG.format(amplitude="http://127.0.0.1:9", mixpanel="http://127.0.0.1:9",
                               meta="http://127.0.0.1:9")
    processes, sdks = {}, []
    for rev, path in revs.items():
        topics = Topics(f"s{uuid.uuid4().hex[:6]}")
        config = folder / f"worker-{topics.prefix}.yaml"
        config.write_text(text if opt_in(path) else re.sub(r",\s*allow_http: true, allow_private: true", "", text))
        ConfigStore(bootstrap, topics).apply(config)
        ensure_topics(bootstrap, [topics.raw], partitions=6)
        processes[rev] = subprocess.Popen(
            [sys.executable, "-m", "eventrouter", "worker", "--config", str(config), "--data-dir",
             str(folder / topics.prefix), "--partitions", "6", "--bootstrap-servers", bootstrap, "--topic-prefix",
             topics.prefix], cwd=path, stdout=(folder / f"worker-{topics.prefix}.log").open("wb"),
            stderr=subprocess.STDOUT, env=env_of(rev))
        sdks.append(Analytics("wk_bench", bootstrap, topic=topics.raw))
    corpus = events(20_000, "s")

    def send(i: int) -> None:
        e = corpus[i % len(corpus)]
        for sdk in sdks:
            sdk.track(e["userId"], e["event"], e["properties"], context=e["context"], message_id=f"s{i}")

    def close() -> None:
        for sdk in sdks:
            sdk.close()
    return processes, send, close


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["forwarder", "worker"])
    parser.add_argument("revs", nargs="+", help="git revisions; '.' is this checkout as it is")
    parser.add_argument("--rate", type=float, default=5000, help="events per second, fed to every contender")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15, help="per window, after 25 s of warm-up")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="eventrouter-bench-sbs-"))
    kafka, bootstrap = start_kafka(full_jit=True)
    revs: dict[str, Path] = {}
    stop = threading.Event()
    try:
        for spec in args.revs:
            revs[spec] = checkout(spec, folder)
        processes, send, close = (forwarders if args.role == "forwarder" else workers)(bootstrap, revs, folder)
        feeder = threading.Thread(target=paced, args=(args.rate, stop, send), daemon=True)
        feeder.start()
        time.sleep(25)  # groups joined, the broker's JIT warm, the contenders' first batches behind them
        per_event: dict[str, list[float]] = {rev: [] for rev in revs}
        for window in range(args.windows):
            before, started = {rev: cpu_seconds(p.pid) for rev, p in processes.items()}, time.time()
            time.sleep(args.seconds)
            elapsed = time.time() - started
            for rev, process in processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{rev}: the {args.role} exited {process.returncode} (logs in {folder})")
                per_event[rev].append((cpu_seconds(process.pid) - before[rev]) / (args.rate * elapsed) * 1e6)
            print(f"window {window}: " + "  ".join(f"{rev} {v[-1]:.1f} us" for rev, v in per_event.items()), flush=True)
        stop.set()
        feeder.join()
        close()
        for process in processes.values():
            process.terminate()
            process.wait(60)
    finally:
        stop.set()
        kafka.stop()
        for path in revs.values():
            if path != REPO:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)
    medians = {rev: sorted(v)[len(v) // 2] for rev, v in per_event.items()}
    lines = [f"| {args.role} revision, side by side at {args.rate:,.0f} events/s | CPU-us per event (median) | "
             "per window |", "|---|---|---|"]
    lines += [f"| {rev} | {medians[rev]:.1f} | {' / '.join(f'{v:.1f}' for v in per_event[rev])} |" for rev in revs]
    write_result(f"side_by_side_{args.role}", {"rate": args.rate, "seconds": args.seconds, "per_event_us": per_event,
                                               "median_us": medians}, "\n".join(lines))
    shutil.rmtree(folder, ignore_errors=True)  # kept when a contender failed: its log is there


if __name__ == "__main__":
    main()
