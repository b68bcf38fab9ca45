"""Live events left open: the console's memory and the pipeline's cost while two live views stay open for
ten minutes at 1,000 events/s, side by side with the same chain without a console, in one run.

The chain is bench.console_pipeline's (SDK -> Kafka -> worker -> three forwarders -> vendor stand-ins, all
on this machine), at a fixed offered rate throughout. The run goes: baseline windows with no console; then
an `eventrouter console` process and two clients logged in, each holding a live view's event stream open
(the events coming in, and the Amplitude integration's with its outcomes) for OPEN seconds, measured in
windows; then baseline windows again with the console stopped. Per window: delivered events/s and CPU-us
per delivered event of the worker and forwarders (bench.console_pipeline.window); while open, the console's
resident memory every 10 s, its CPU, and what the views received.

    python -m bench.console_live [--rate 1000] [--open 600] [--seconds 60] [--baseline 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import cpu_seconds, free_port, rss_mib, wait_http, write_result
from bench.console_pipeline import window
from bench.fixed_rate import PASSWORD, USER, finish_feed, first_line, last_line, median, running_chain, stop, stopping

REPO = Path(__file__).resolve().parents[1]
VIEWS = {"coming in": "/live/stream", "amplitude": "/live/stream?integration=amplitude"}


def child_watch(base: str, path: str) -> None:
    """A person with a live view open: logged in, the view's stream read until SIGTERM; then what came."""
    import requests

    stop = stopping()
    session = requests.Session()
    reply = session.post(f"{base}/login", data={"name": USER, "password": PASSWORD}, headers={"Origin": base},
                         timeout=30)
    assert reply.status_code == 200, reply.status_code
    counts: dict[str, int] = {}
    first: list[float] = []

    def read() -> None:
        deadline = time.monotonic() + 60
        while True:  # until the console has read the config topic (an integration's view needs it)
            stream = session.get(base + path, stream=True, timeout=(10, 60))
            if stream.status_code == 200 or time.monotonic() > deadline:
                break
            stream.close()
            time.sleep(0.5)
        assert stream.status_code == 200, (stream.status_code, path)
        with stream:
            for line in stream.iter_lines():
                if line.startswith(b"event: "):
                    kind = line[7:].decode()
                    counts[kind] = counts.get(kind, 0) + 1
                    if kind == "ready" and not first:
                        first.append(time.time())
                        print(json.dumps({"ready": True}), flush=True)
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stop.wait()
    print(json.dumps({"counts": counts}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--open", type=float, default=600, help="seconds the live views stay open")
    parser.add_argument("--seconds", type=float, default=60, help="per window")
    parser.add_argument("--baseline", type=int, default=2, help="windows without a console, before and after")
    parser.add_argument("--warm-up", type=float, default=40)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--no-result", action="store_true")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        child_watch(args.child[1], args.child[2])
        return

    rows: list[dict[str, Any]] = []

    with running_chain(args.rate, args.partitions, "console-live") as ctx:
        time.sleep(args.warm_up)
        print(f"warm-up done; windows of {args.seconds:g} s at {args.rate:,.0f} events/s", flush=True)

        def measure(kind: str) -> None:
            row = window(kind, None, ctx, args.seconds, 0)
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("kind", "delivered_per_s", "pipeline_cpu_us_per_event",
                                                   "p99_ms")}), flush=True)

        for _ in range(args.baseline):
            measure("baseline: no console")
        with LiveViews(ctx) as views:
            while time.monotonic() - views.opened < args.open:
                measure("live views open")
        for _ in range(args.baseline):
            measure("baseline: no console, after")
        sent = finish_feed(ctx)
    report(args, rows, views, sent)


class LiveViews:
    """An `eventrouter console` on the chain's broker and topics, and a client holding each of VIEWS open;
    the console's resident memory every 10 s while they are."""

    def __init__(self, ctx: dict[str, Any]) -> None:
        self.ctx = ctx
        self.memory: list[tuple[float, float]] = []  # (seconds open, console RSS MiB)
        self.received: list[dict[str, int]] = []
        self.peak = self.cpu_pct = self.open_s = 0.0
        self.console: subprocess.Popen[bytes] | None = None
        self.watchers: list[subprocess.Popen[str]] = []
        self._sampling = threading.Event()

    def __enter__(self) -> LiveViews:
        port, ctx = free_port(), self.ctx
        url = f"http://127.0.0.1:{port}"
        log = (ctx["folder"] / "console.log").open("ab")
        self.console = subprocess.Popen(
            [sys.executable, "-m", "eventrouter", "console", "--bootstrap-servers", ctx["bootstrap"],
             "--topic-prefix", ctx["prefix"], "--host", "127.0.0.1", "--port", str(port), "--users",
             str(ctx["users"]), "--log-level", "WARNING"], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{url}/login", timeout=60)
            for path in VIEWS.values():
                self.watchers.append(subprocess.Popen(
                    [sys.executable, "-m", "bench.console_live", "--child", "watch", url, path], cwd=REPO,
                    stdout=subprocess.PIPE, stderr=log, text=True))
                first_line(self.watchers[-1], "a live view")
        except BaseException:
            self.__exit__()
            raise
        self.opened, self._cpu = time.monotonic(), cpu_seconds(self.console.pid)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        assert self.console is not None
        while not self._sampling.wait(10):
            self.memory.append((round(time.monotonic() - self.opened), round(rss_mib(self.console.pid, now=True), 1)))

    def __exit__(self, *_exc: object) -> None:
        self._sampling.set()
        if self.console is not None and self.console.poll() is None and self.watchers:
            self.open_s = time.monotonic() - self.opened
            self.cpu_pct = (cpu_seconds(self.console.pid) - self._cpu) / self.open_s * 100
            self.peak = rss_mib(self.console.pid)
            self.received = [last_line(w, "a live view")["counts"] for w in self.watchers]
        for watcher in self.watchers:
            stop(watcher)
        stop(self.console)
        self.watchers, self.console = [], None


def report(args: argparse.Namespace, rows: list[dict[str, Any]], views: LiveViews, sent: dict[str, Any]) -> None:
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    lines = [f"| {args.rate:,.0f} events/s offered, windows of {args.seconds:g} s | windows | delivered events/s "
             "(median) | CPU-us per event, worker + 3 forwarders (median) | p99 latency (median) |",
             "|---|---|---|---|---|"]
    medians = {}
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        medians[kind] = {k: median([r[k] for r in mine]) for k in ("delivered_per_s", "pipeline_cpu_us_per_event",
                                                                   "p99_ms")}
        m = medians[kind]
        lines.append(f"| {kind} | {len(mine)} | {m['delivered_per_s']:,.0f} | {m['pipeline_cpu_us_per_event']:.1f} | "
                     f"{m['p99_ms']:.0f} ms |")
    memory, peak, open_s, received = views.memory, views.peak, views.open_s, views.received
    rss = [m for _, m in memory]
    lines += ["", f"Two live views open for {open_s:.0f} s (the events coming in, and amplitude's): the console's "
              f"resident memory {rss[0] if rss else 0:.1f} MiB after 10 s, {rss[-1] if rss else 0:.1f} MiB at the "
              f"end, peak {peak:.1f} MiB; its CPU {views.cpu_pct:.1f}% of a core. The views received: "
              + "; ".join(f"{name}: {json.dumps(counts)}" for name, counts in zip(VIEWS, received, strict=True))
              + f". The feed sent {sent['sent']:,} events, {sent['failed']} failed.",
              "", "| seconds open | console RSS MiB |", "|---|---|"]
    lines += [f"| {s} | {m} |" for s, m in memory[::6]]
    result = {"rate": args.rate, "open_s": round(open_s), "seconds": args.seconds, "medians": medians,
              "windows": rows, "console_rss_mib": memory, "console_peak_rss_mib": round(peak, 1),
              "console_cpu_pct": round(views.cpu_pct, 1), "views": dict(zip(VIEWS, received, strict=True)),
              "feed": sent}
    if args.no_result:
        print("\n".join(lines))
    else:
        write_result("console_live", result, "\n".join(lines))


if __name__ == "__main__":
    main()
