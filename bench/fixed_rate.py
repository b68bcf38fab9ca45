"""The whole chain held at a fixed offered rate while a benchmark measures something beside it (a console
browsed, live views left open): a broker of its own, the stand-ins counting each arrival and its latency
from the event's scheduled send, `up`'s processes (worker, three forwarders) on the chain's config, and
the SDK's feed in a child process. `window` measures what the pipeline did in a span: delivered events/s,
CPU-us per delivered event per process, latency. Used by bench.console_pipeline and bench.console_live."""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bench.chain import CONFIG, ENV, VENDORS, events
from bench.common import cpu_seconds, start_kafka

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "bench", "a long enough bench password"


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else float("nan")


# -- stand-ins that count arrivals and their latency per window ------------------------------------------
class Tally:
    """What one stand-in received since the last `take()`: arrival times and latencies from schedule."""

    def __init__(self) -> None:
        self.schedule = (0.0, 0.0)  # (t0, rate): event i was due at t0 + i / rate; (0, 0) before the feed
        self.arrived: list[float] = []
        self.latency: list[float] = []

    def note(self, key: str) -> None:
        now, (t0, rate) = time.time(), self.schedule
        tag, _, i = key.split(":", 1)[0].rpartition("-")  # Meta's key is event_id:event_name
        if not rate or tag != "f":  # the feed's warm-up call, before its clock started
            return
        self.arrived.append(now)
        self.latency.append(now - (t0 + int(i) / rate))

    def take(self) -> tuple[list[float], list[float]]:
        arrived, latency = self.arrived, self.latency
        self.arrived, self.latency = [], []
        return arrived, latency


def stand_ins() -> dict[str, Any]:
    from eventrouter.dev.standins import AmplitudeStandIn, MetaStandIn, MixpanelStandIn

    def counted(cls: Any) -> Any:
        class Counted(cls):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.tally = Tally()

            def accept(self, event: dict[str, Any], key: str | None) -> None:
                if key is not None:  # nothing kept but when it came: no growing heap in this process
                    self.tally.note(key)
        return Counted().start()
    return {"amplitude": counted(AmplitudeStandIn), "mixpanel": counted(MixpanelStandIn),
            "meta": counted(MetaStandIn)}


# -- children: the feed and the console's client --------------------------------------------------------
def stopping() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    return stop


def child_feed(bootstrap: str, topic: str, rate: float, tag: str) -> None:
    """The SDK, open loop at `rate` until SIGTERM: event i is due at t0 + i / rate, messageId `tag-i`."""
    from producers import Analytics

    stop = stopping()
    corpus = events(20_000, tag)
    analytics = Analytics("wk_bench", bootstrap, topic=topic)
    warm = corpus[0]
    analytics.track(warm["userId"], warm["event"], warm["properties"], context=warm["context"],
                    message_id=f"{tag}warm")
    analytics.flush(30)
    t0, cpu0 = time.time(), cpu_seconds()
    print(json.dumps({"t0": t0}), flush=True)
    i = 0
    while not stop.is_set():
        wait = t0 + i / rate - time.time()
        if wait > 0.002:  # paced in steps of 2 ms, as bench.chain's SDK
            time.sleep(wait)
        e = corpus[i % len(corpus)]
        analytics.track(e["userId"], e["event"], e["properties"], context=e["context"], message_id=f"{tag}-{i}")
        i += 1
    pending = analytics.flush(30)
    stats = analytics.stats()
    analytics.close()
    print(json.dumps({"sent": i, "pending": pending, "failed": stats["failed"], "cpu_s": cpu_seconds() - cpu0}),
          flush=True)


def child(module: str, *args: str, log: IO[bytes] | None = None) -> subprocess.Popen[str]:
    """`python -m module --child args...`, its stdout read by us."""
    return subprocess.Popen([sys.executable, "-m", module, "--child", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=log, text=True)


def first_line(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("{"):
        raise RuntimeError(f"{what} did not start (exit {process.wait(10)}); see its log")
    result: dict[str, Any] = json.loads(line)
    return result


def last_line(process: subprocess.Popen[str], what: str, timeout: float = 60) -> dict[str, Any]:
    process.terminate()
    out, _ = process.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(f"{what} gave no result (exit {process.returncode}); see its log")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def stop(process: subprocess.Popen[Any] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def history(bootstrap: str, topics: Any, folder: Path, config: Path, count: int) -> None:
    """`count` revisions on the config topic, the chain's config the newest (the revisions page has a list
    and diffs to show): the ones before differ by a writeKey more each."""
    from schemas.runtime.revisions import ConfigStore

    store = ConfigStore(bootstrap, topics)
    text = config.read_text()
    for n in range(count - 1):
        earlier = folder / f"revision-{n}.yaml"
        keys = ", ".join(["wk_bench", *(f"wk_old_{k:03d}" for k in range(n + 1))])
        earlier.write_text(text.replace("write_keys: [wk_bench]", f"write_keys: [{keys}]"))
        store.apply(earlier)
    store.apply(config)


@contextlib.contextmanager
def running_chain(rate: float, partitions: int, name: str, *, revisions: int = 1) -> Iterator[dict[str, Any]]:
    """The chain at `rate` for the caller's windows: a broker, the stand-ins, `up`'s processes on `revisions`
    revisions of the chain's config (a console user made), and the SDK's feed; the context `window` takes,
    with the feed under "feed" (finish_feed stops it). Everything is stopped by PID at the end."""
    from eventrouter.console.auth import ADMIN
    from eventrouter.console.users import add_user
    from eventrouter.stack import Stack
    from schemas import Topics
    from schemas.runtime.kafka import ensure_topics

    kafka, bootstrap = start_kafka(full_jit=True)
    vendors = stand_ins()
    folder = Path(tempfile.mkdtemp(prefix=f"eventrouter-bench-{name}-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    config = folder / "eventrouter.yaml"
    config.write_text(CONFIG.format(**{n: s.url for n, s in vendors.items()}))
    users = folder / "console-users.json"
    add_user(users, USER, ADMIN, PASSWORD)
    topics = Topics(f"b{uuid.uuid4().hex[:6]}")
    ctx: dict[str, Any] = {"feed": None}
    stack = None
    try:
        history(bootstrap, topics, folder, config, revisions)
        ensure_topics(bootstrap, [topics.raw, topics.receipts, *(topics.integration(v) for v in VENDORS)],
                      partitions=partitions)
        stack = Stack(bootstrap, topics, config, folder, gateway_port=None, env=ENV, partitions=partitions).start()
        broker = kafka.status().nodes[0].pid
        children = {c.role: c.process for c in stack.children}
        pids = {role: p.pid for role, p in children.items()} | ({"broker": broker} if broker else {})
        feed = child("bench.fixed_rate", "feed", bootstrap, topics.raw, f"{rate:g}", "f",
                     log=(folder / "feed.log").open("ab"))
        ctx |= {"bootstrap": bootstrap, "prefix": topics.prefix, "users": users, "folder": folder, "pids": pids,
                "children": children, "vendors": vendors, "feed": feed}
        t0 = first_line(feed, "the feed")["t0"]
        for stand_in in vendors.values():
            stand_in.tally.schedule = (t0, rate)
        yield ctx
    finally:
        stop(ctx["feed"])
        if stack is not None:
            stack.stop()
        kafka.stop()
        for stand_in in vendors.values():
            stand_in.stop()


def finish_feed(ctx: dict[str, Any]) -> dict[str, Any]:
    """Stop the feed; what it sent."""
    sent = last_line(ctx["feed"], "the feed")
    ctx["feed"] = None
    return sent


if __name__ == "__main__":  # the feed's child process
    if sys.argv[1:3] == ["--child", "feed"]:
        child_feed(sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6])
