"""What every benchmark needs: its own broker, CPU and memory from /proc, percentiles, results on disk."""

from __future__ import annotations

import atexit
import json
import os
import platform
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eventrouter import paths
from eventrouter.dev.localkafka import LocalKafka
from eventrouter.dev.localkafka.cluster import JVM_OPTIONS_ENV

RESULTS = Path(__file__).resolve().parent / "results"
_TICKS = os.sysconf("SC_CLK_TCK")


def start_kafka(*, full_jit: bool = False) -> tuple[LocalKafka, str]:
    """A single-node broker of the benchmark's own, in a temporary state directory. `full_jit`: the JVM
    compiles the broker's hot code fully, as on a broker that has run for a while (the tests' broker
    stops at the first tier, which starts quicker but spends about twice the CPU per request)."""
    if full_jit:
        os.environ[JVM_OPTIONS_ENV] = "-XX:TieredStopAtLevel=4 -XX:CICompilerCount=2"
    state = Path(tempfile.mkdtemp(prefix="eventrouter-bench-"))
    atexit.register(shutil.rmtree, state, ignore_errors=True)  # after the benchmark stopped the broker: its data
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (`timeout`, a CI's cancel) unwinds like Ctrl-C, so the benchmark's `finally` stops the broker
        # and its processes: by default it ended this process at once and left the broker running.
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    kafka = LocalKafka(state, paths.cache_dir())
    status = kafka.start(nodes=1)
    assert status.bootstrap is not None
    return kafka, status.bootstrap


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_ticks() -> tuple[int, int]:
    """(stolen, all) CPU ticks of the whole machine so far, from /proc/stat: what the hypervisor gave other
    guests while ours waited. A run's share of stolen time says how much of the 2 cores it really had."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def steal_pct(before: tuple[int, int], after: tuple[int, int]) -> float:
    return round(100 * (after[0] - before[0]) / max(1, after[1] - before[1]), 1)


def rss_mib(pid: int | None = None, *, now: bool = False) -> float:
    """Peak resident memory (VmHWM) so far, or with `now` the current (VmRSS)."""
    field = "VmRSS:" if now else "VmHWM:"
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def track_corpus(n: int, seed: int = 42) -> list[tuple[str, str, dict[str, Any]]]:
    """Deterministic server-side track calls (user, event, properties), ~400 bytes as JSON."""
    rng = random.Random(seed)
    names = ["Order Completed", "Product Viewed", "Signed Up", "Subscription Renewed", "Cart Updated"]
    corpus = []
    for i in range(n):
        properties = {"order_id": f"o-{rng.randrange(10**8)}", "revenue": round(rng.uniform(1, 500), 2),
                      "currency": "EUR", "coupon": None, "items": rng.randrange(1, 9),
                      "products": [{"product_id": f"sku-{rng.randrange(10**5)}", "price": round(rng.uniform(1, 99), 2),
                                    "quantity": rng.randrange(1, 4)} for _ in range(2)],
                      "plan": rng.choice(["free", "pro", "team"]), "first_purchase": rng.random() < 0.2}
        corpus.append((f"user-{rng.randrange(10_000)}", names[i % len(names)], properties))
    return corpus


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 10.0) -> None:
    """Until `url` answers at all (any status)."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def until_arrived(arrived: Mapping[str, Mapping[str, float]], expected: set[str], before: Mapping[str, int],
                  timeout: float, every: float = 0.1) -> None:
    """Until each of `arrived` (a stand-in's first arrival per key) holds every key of `expected`, or
    `timeout` seconds. `before`: how many keys each held when the run began. The counts are watched first
    and the whole set compared only once they add up, at most once a second: comparing a set of 135,000
    keys with three vendors' keys every 0.1 s took ~0.2 of a core from the pipeline being measured
    (the chain's stand-ins and this process read 22-26 CPU-ms per 1k events)."""
    deadline, compared = time.time() + timeout, 0.0
    while time.time() < deadline:
        if all(len(keys) - before.get(name, 0) >= len(expected) for name, keys in arrived.items()) \
                and time.time() - compared >= 1.0:
            compared = time.time()
            if all(expected <= keys.keys() for keys in arrived.values()):
                return
        time.sleep(every)


def write_result(name: str, result: dict[str, Any], table: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, **result}
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table + "\n")
    print(table)


def produce_all(producer: Any, topic: str, records: Sequence[tuple[bytes | None, bytes]], pause: float = 0.1) -> None:
    """Hand every (key, value) to a confluent-kafka producer, waiting for room when its queue is full."""
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(pause)
