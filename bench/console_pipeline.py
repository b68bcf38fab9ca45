"""The pipeline's cost with and without a console open, side by side in one run. The chain's shape (SDK ->
Kafka -> worker -> three forwarders, Amplitude, Mixpanel and Meta CAPI starter kits -> vendor stand-ins;
every process and the broker on this machine's cores) runs at a fixed offered rate for the whole run;
alternating windows measure it:

- baseline: no console;
- console: an `eventrouter console` process of its own on the same broker and topics (started for the
  window, with a users file made by `add_user`), and a client logged in that requests one page every
  PACE seconds, in turn: sources, integrations, an integration (its editor), revisions, audit, a post to
  the test panel, and the test panel's live event where the console has it (it reads the end of the raw
  topic). One console kind per pace (`--paces`; by default a page every 2 s and every 0.2 s).

Windows go baseline, console, console, baseline, ... so the machine's drift hits every kind alike. Each
window starts SETTLE seconds after its console answered (its start-up is not counted; reported apart).
Per window: delivered events/s (events arrived at the stand-ins, the mean of the three vendors), CPU-us per
delivered event of the worker and the forwarders (all threads, from /proc) and of the broker, latency
from each event's scheduled send to its arrival, the console's own CPU and its page times. The medians
per kind go in the result.

    python -m bench.console_pipeline [--rate 3000] [--rounds 4] [--seconds 20] [--paces 2,0.2]
"""

from __future__ import annotations

import argparse
import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    cpu_seconds,
    free_port,
    machine_ticks,
    percentile,
    rss_mib,
    steal_pct,
    wait_http,
    write_result,
)
from bench.fixed_rate import (
    PASSWORD,
    USER,
    child,
    finish_feed,
    first_line,
    last_line,
    median,
    running_chain,
    stop,
    stopping,
)

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = "amplitude"  # the integration whose page, test panel and live event the client opens
RATE = 3000  # the chain kept up with 5,000/s only just on this machine (bench/results/console_pipeline_rate_5000.md):
# a backlog left by one window spilled into the next; at 3,000/s every window keeps up on its own


def child_browse(base: str, pace: float) -> None:
    """A person at the console, and faster: logged in, one page every `pace` seconds in turn until SIGTERM;
    then the answer times per page (ms) and the statuses other than 200."""
    import requests

    stop = stopping()
    session = requests.Session()
    origin = {"Origin": base}  # as a browser sends with a POST (the console refuses other sites')
    reply = session.post(f"{base}/login", data={"name": USER, "password": PASSWORD}, headers=origin, timeout=30)
    assert reply.status_code == 200 and "csrf-token" in reply.text, (reply.status_code, reply.text[:300])
    deadline = time.time() + 60
    while True:  # until the console has read the config topic
        page = session.get(f"{base}/integrations/{INTEGRATION}", timeout=30)
        if page.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert page.status_code == 200, (page.status_code, page.text[:300])
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    playbook = re.search(r'<textarea id="playbook"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert token and playbook, page.text[:300]
    form = {"csrf": token[1], "playbook": html.unescape(playbook[1]), "sample": "track"}
    cycle: list[tuple[str, str, dict[str, str] | None, dict[str, str]]] = [
        ("sources", "/sources", None, {}), ("integrations", "/integrations", None, {}),
        ("integration + editor", f"/integrations/{INTEGRATION}", None, {}), ("revisions", "/revisions", None, {}),
        ("audit log", "/audit", None, {}),
        ("test panel", f"/integrations/{INTEGRATION}/try", form, {"X-Fragment": "trial", **origin})]
    live = session.post(f"{base}/integrations/{INTEGRATION}/live", data=form, headers=origin, timeout=30)
    if live.status_code == 200:  # the console has the live event (it reads the newest raw records)
        cycle.append(("test panel: live event", f"/integrations/{INTEGRATION}/live", form, origin))
    times: dict[str, list[float]] = {label: [] for label, *_ in cycle}
    other: dict[str, int] = {}
    print(json.dumps({"ready": [label for label, *_ in cycle]}), flush=True)
    due, n = time.monotonic(), 0
    while not stop.is_set():
        label, path, data, headers = cycle[n % len(cycle)]
        started = time.perf_counter()
        reply = session.post(base + path, data=data, headers=headers, timeout=30) if data is not None \
            else session.get(base + path, timeout=30)
        times[label].append((time.perf_counter() - started) * 1000)
        if reply.status_code != 200:
            other[f"{label}: {reply.status_code}"] = other.get(f"{label}: {reply.status_code}", 0) + 1
        n += 1
        due = max(due + pace, time.monotonic())  # a slow answer delays the next page, no burst after it
        stop.wait(due - time.monotonic())
    print(json.dumps({"requests": n, "ms": times, "not_200": other}), flush=True)


# -- the console, opened for a window -------------------------------------------------------------------
class Console:
    """`eventrouter console` on the bench's broker and topics, and a client logged in browsing it."""

    def __init__(self, bootstrap: str, prefix: str, users: Path, folder: Path, pace: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (folder / "console.log").open("ab")
        self.started = time.monotonic()
        self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "eventrouter", "console", "--bootstrap-servers", bootstrap, "--topic-prefix",
             prefix, "--host", "127.0.0.1", "--port", str(self.port), "--users", str(users), "--log-level",
             "WARNING"], cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        self.client: subprocess.Popen[str] | None = None
        try:
            wait_http(f"{self.url}/login", timeout=60)
            self.client = child("bench.console_pipeline", "browse", self.url, str(pace), log=self.log)
            self.pages = first_line(self.client, "the console's client")["ready"]
        except BaseException:
            self.close()
            raise
        self.ready_s = time.monotonic() - self.started

    def cpu(self) -> tuple[float, float]:
        assert self.process is not None and self.client is not None
        return cpu_seconds(self.process.pid), cpu_seconds(self.client.pid)

    def finish(self) -> dict[str, Any]:
        assert self.client is not None
        browsed = last_line(self.client, "the console's client")
        self.client = None
        return browsed

    def close(self) -> None:
        stop(self.client)
        stop(self.process)
        self.process = self.client = None
        self.log.close()


# -- the run --------------------------------------------------------------------------------------------
def window(kind: str, pace: float | None, ctx: dict[str, Any], seconds: float, settle: float) -> dict[str, Any]:
    pids: dict[str, int] = ctx["pids"]
    vendors: dict[str, Any] = ctx["vendors"]
    console = Console(ctx["bootstrap"], ctx["prefix"], ctx["users"], ctx["folder"], pace) if pace else None
    try:
        time.sleep(settle)
        for role, process in ctx["children"].items():
            if process.poll() is not None:
                raise RuntimeError(f"{role} exited {process.returncode} (logs in {ctx['folder']})")
        before = {role: cpu_seconds(pid) for role, pid in pids.items()}
        opened = console.cpu() if console else (0.0, 0.0)
        own, ticks = cpu_seconds(), machine_ticks()
        for stand_in in vendors.values():
            stand_in.tally.take()
        start = time.time()
        time.sleep(seconds)
        end = time.time()
        taken = {name: stand_in.tally.take() for name, stand_in in vendors.items()}
        after = {role: cpu_seconds(pid) for role, pid in pids.items()}
        closed = console.cpu() if console else (0.0, 0.0)
        own, stolen = cpu_seconds() - own, steal_pct(ticks, machine_ticks())
        console_rss = rss_mib(console.process.pid, now=True) if console and console.process else 0.0
        browsed = console.finish() if console else None
    finally:
        if console:
            console.close()
    elapsed = end - start
    delivered, latencies = {}, []
    for name, (arrived, latency) in taken.items():
        inside = [lat for at, lat in zip(arrived, latency, strict=True) if start <= at < end]
        delivered[name] = len(inside)
        latencies += inside
    events_in = sum(delivered.values()) / len(delivered)  # events, the mean of the three vendors
    per_event = {role: round((after[role] - before[role]) / max(1.0, events_in) * 1e6, 1) for role in pids}
    pipeline = [role for role in pids if role != "broker"]
    row: dict[str, Any] = {
        "kind": kind, "seconds": round(elapsed, 2), "delivered_per_s": round(events_in / elapsed),
        "delivered": delivered, "cpu_us_per_event": per_event,
        "pipeline_cpu_us_per_event": round(sum(per_event[r] for r in pipeline), 1),
        "broker_cpu_us_per_event": per_event.get("broker", float("nan")),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1), "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "stand_ins_cpu_pct": round(own / elapsed * 100, 1), "steal_pct": stolen}
    if console and browsed:
        row |= {"console_cpu_pct": round((closed[0] - opened[0]) / elapsed * 100, 1),
                "client_cpu_pct": round((closed[1] - opened[1]) / elapsed * 100, 1),
                "console_start_cpu_s": round(opened[0], 2), "console_ready_s": round(console.ready_s, 2),
                "console_rss_mib": round(console_rss, 1), "pages": console.pages,
                "page_requests": browsed["requests"], "not_200": browsed["not_200"],
                "page_ms": {label: [round(ms, 1) for ms in v] for label, v in browsed["ms"].items()}}
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=RATE, help="events per second offered, all run long "
                        "(another rate writes console_pipeline_rate_RATE)")
    parser.add_argument("--rounds", type=int, default=4, help="each a window of every kind")
    parser.add_argument("--seconds", type=float, default=20, help="per window")
    parser.add_argument("--settle", type=float, default=5, help="before each window, after its console answered")
    parser.add_argument("--paces", default="2,0.2", help="seconds between the console client's pages, one "
                                                          "console window kind each")
    parser.add_argument("--warm-up", type=float, default=40, help="seconds at the rate before the first window")
    parser.add_argument("--revisions", type=int, default=20, help="on the config topic")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--no-result", action="store_true", help="print the tables, write no result file")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    if args.child:
        child_browse(args.child[1], float(args.child[2]))  # `browse URL PACE`
        return

    paces = [float(p) for p in args.paces.split(",") if p]
    kinds: list[tuple[str, float | None]] = [("baseline: no console", None)]
    kinds += [(f"console open, a page every {p:g} s", p) for p in paces]
    rows: list[dict[str, Any]] = []
    with running_chain(args.rate, args.partitions, "console-pipeline", revisions=args.revisions) as ctx:
        # the broker's JIT, the processes' first batches; a console opened once (its topics made, its code
        # read from disk) so the first console window pays no more than the others
        time.sleep(args.warm_up / 2)
        window("warm-up", paces[-1] if paces else None, ctx, args.warm_up / 2, 2)
        print(f"warm-up done; windows of {args.seconds:g} s at {args.rate:,.0f} events/s", flush=True)
        for round_ in range(args.rounds):
            for kind, pace in kinds:
                row = window(kind, pace, ctx, args.seconds, args.settle) | {"round": round_ + 1}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k not in ("page_ms", "pages")}), flush=True)
        sent = finish_feed(ctx)
    report(args, kinds, rows, sent)


def report(args: argparse.Namespace, kinds: list[tuple[str, float | None]], rows: list[dict[str, Any]],
           sent: dict[str, Any]) -> None:
    by_kind = {kind: [r for r in rows if r["kind"] == kind] for kind, _ in kinds}
    medians: dict[str, dict[str, Any]] = {}
    for kind, mine in by_kind.items():
        keys = ["delivered_per_s", "pipeline_cpu_us_per_event", "broker_cpu_us_per_event", "p50_ms", "p99_ms",
                "console_cpu_pct", "client_cpu_pct", "steal_pct"]
        medians[kind] = {k: median([r[k] for r in mine if k in r]) for k in keys if any(k in r for r in mine)}
        medians[kind]["cpu_us_per_event"] = {role: median([r["cpu_us_per_event"][role] for r in mine])
                                             for role in mine[0]["cpu_us_per_event"]}
    base = medians[kinds[0][0]]
    roles = [role for role in base["cpu_us_per_event"] if role != "broker"]
    lines = [f"| {args.rate:,.0f} events/s offered; medians of {args.rounds} windows of {args.seconds:g} s each | "
             "delivered events/s | CPU-us per event: worker + 3 forwarders | vs baseline | "
             + " | ".join(roles) + " | broker | p50 / p99 latency | console process, % of a core | "
             "its client, % of a core |", "|---|---|---|---|" + "---|" * len(roles) + "---|---|---|---|"]
    for kind, m in medians.items():
        ratio = m["pipeline_cpu_us_per_event"] / base["pipeline_cpu_us_per_event"]
        console = f"{m['console_cpu_pct']:.1f}" if "console_cpu_pct" in m else "-"
        client = f"{m['client_cpu_pct']:.1f}" if "client_cpu_pct" in m else "-"
        lines.append(f"| {kind} | {m['delivered_per_s']:,.0f} | {m['pipeline_cpu_us_per_event']:.1f} | {ratio:.3f} | "
                     + " | ".join(f"{m['cpu_us_per_event'][r]:.1f}" for r in roles)
                     + f" | {m['broker_cpu_us_per_event']:.1f} | {m['p50_ms']:.0f} / {m['p99_ms']:.0f} ms | "
                       f"{console} | {client} |")
    lines += ["", "| window | kind | delivered events/s | CPU-us per event: worker + 3 forwarders | broker | "
              "p50 / p99 latency | console, % of a core | console pages answered, p50 / p99 | stolen by the host |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n, row in enumerate(rows, 1):
        console = pages = "-"
        if "page_ms" in row:
            every = [ms for v in row["page_ms"].values() for ms in v]
            console = f"{row['console_cpu_pct']:.1f}"
            pages = f"{len(every)}, {percentile(every, 50):.0f} / {percentile(every, 99):.0f} ms"
        lines.append(f"| {n} | {row['kind']} | {row['delivered_per_s']:,} | {row['pipeline_cpu_us_per_event']:.1f} | "
                     f"{row['broker_cpu_us_per_event']:.1f} | {row['p50_ms']:.0f} / {row['p99_ms']:.0f} ms | "
                     f"{console} | {pages} | {row['steal_pct']:g}% |")
    opened = [r for r in rows if "page_ms" in r]
    if opened:
        labels = list(opened[0]["page_ms"])
        lines += ["", "| console page, answer time p50 / p99 ms (all its windows) | "
                  + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for kind, pace in kinds:
            if pace is None:
                continue
            mine = [r for r in opened if r["kind"] == kind]
            cells = []
            for label in labels:
                values = [ms for r in mine for ms in r["page_ms"].get(label, [])]
                cells.append(f"{percentile(values, 50):.0f} / {percentile(values, 99):.0f} ({len(values)})")
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        start_cpu = median([r["console_start_cpu_s"] for r in opened])
        lines += ["", f"The console's start, up to its window (not in any window): {start_cpu:.2f} "
                  f"CPU-s, answering after {median([r['console_ready_s'] for r in opened]):.1f} s (medians); "
                  f"pages polled: {', '.join(opened[0]['pages'])}; requests not answered 200: "
                  f"{sum(sum(r['not_200'].values()) for r in opened)}. The feed sent {sent['sent']:,} events, "
                  f"{sent['failed']} failed."]
    result = {"rate": args.rate, "rounds": args.rounds, "seconds": args.seconds, "settle": args.settle,
              "paces": args.paces, "revisions": args.revisions, "partitions": args.partitions, "medians": medians,
              "windows": rows, "feed": sent, "commit": _commit()}
    if args.no_result:
        print("\n".join(lines))
    else:
        name = "console_pipeline" if args.rate == RATE else f"console_pipeline_rate_{args.rate:g}"
        write_result(name, result, "\n".join(lines))


def _commit() -> str:
    """HEAD, and `+changes` when the console's code in this checkout differs from it (what was measured)."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "eventrouter"], capture_output=True,
                           text=True).stdout.strip()
    return head + ("+changes" if dirty else "")


if __name__ == "__main__":
    main()
