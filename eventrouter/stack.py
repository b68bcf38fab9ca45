"""The pipeline's processes against one broker (`eventrouter up CONFIG`, and the main job): the HTTP
gateway, stream workers, and a forwarder per integration, each a child process with its own log and
metrics port, stopped by its PID. A child that exits on its own is started again (`revive()`, at most
`max_restarts` times per role), as a supervisor would. `progress()` reads every stage's counters (the raw
topic's size, the workers' and forwarders' metrics) into one account per integration."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from schemas import Topics
from schemas.config import load_config

_LABEL = re.compile(r'(\w+)="([^"]*)"')


def free_port() -> int:
    """A free port for a child to bind, below the OS's ephemeral range: a port of that range, free when
    probed, can be taken by any outgoing connection (a Kafka client's) before the child binds it (seen on
    CI: a forwarder exited with `Address already in use` for its metrics port)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 12_000), max(1025, low))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Child:
    role: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    metrics_port: int | None = None
    args: list[str] = field(default_factory=list)  # the `eventrouter` command it runs (started again with them)
    metrics: dict[str, float] = field(default_factory=dict)  # its counters when last read
    stopped: bool = False  # by us (stop_child): not started again
    down_at: float | None = None  # when it was first seen exited (monotonic)


@dataclass
class Lane:
    """One integration's account: what the workers routed to it and what became of it."""

    routed: float = 0.0
    filtered: float = 0.0
    failed: float = 0.0          # the playbook failed: dead-lettered by the worker
    delivered: float = 0.0
    dead: dict[str, float] = field(default_factory=dict)
    retried: float = 0.0
    lag: float = 0.0

    @property
    def settled(self) -> float:
        return self.delivered + sum(self.dead.values())


@dataclass
class Progress:
    produced: int = 0            # records in the raw topic
    read: float = 0.0
    invalid: float = 0.0         # dead-lettered before routing (decode, validation, writeKey)
    deduplicated: float = 0.0
    lanes: dict[str, Lane] = field(default_factory=dict)

    def line(self) -> str:
        lanes = "  ".join(f"{name} {lane.routed:.0f}>{lane.delivered:.0f}"
                          + (f" dead {sum(lane.dead.values()):.0f}" if lane.dead else "")
                          for name, lane in sorted(self.lanes.items()))
        return (f"produced {self.produced}  read {self.read:.0f}  invalid {self.invalid:.0f}  "
                f"dedup {self.deduplicated:.0f}  |  routed>delivered: {lanes}")


def _sum(metrics: Mapping[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k.split("{")[0] == name)


class Stack:
    def __init__(self, bootstrap: str, topics: Topics, config: Path, folder: Path, *, gateway_port: int | None = 0,
                 workers: int = 1, env: Mapping[str, str] | None = None, partitions: int = 3,
                 worker_args: Sequence[str] = ()) -> None:
        self.worker_args = list(worker_args)  # more `eventrouter worker` options (bench/soak.py)
        self.bootstrap, self.topics, self.config, self.folder = bootstrap, topics, config, folder
        self.gateway_port = free_port() if gateway_port == 0 else gateway_port
        self.workers, self.partitions = workers, partitions
        self.env = {**os.environ, **(env or {})}
        parsed = load_config(config)
        named = {name for p in parsed.pipelines for name in p.integrations}
        self.integrations = [i.name for i in parsed.integrations if i.enabled and i.name in named]
        self.children: list[Child] = []
        self.max_restarts = 3
        self.restarts: dict[str, int] = {}
        self._retired: list[tuple[str, dict[str, float]]] = []  # counters of children started again

    def _spawn(self, role: str, args: list[str], metrics: bool = True) -> Child:
        child = self._launch(role, args, metrics)
        self.children.append(child)
        return child

    def _launch(self, role: str, args: list[str], metrics: bool) -> Child:
        port = free_port() if metrics else None
        log = open(self.folder / f"{role}.log", "ab")  # noqa: SIM115 - closed in stop()
        command = [sys.executable, "-m", "eventrouter", *args, "--bootstrap-servers", self.bootstrap,
                   "--topic-prefix", self.topics.prefix, *(["--metrics-port", str(port)] if port else [])]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return Child(role, process, log, port, list(args))

    def revive(self) -> list[str]:
        """Start again each child that exited on its own (a crash, or a start that failed: a port taken, the
        broker not ready), at most `max_restarts` times per role, 0.5, 1, 2 s after it was seen down; what
        was done, one line each. Its counters as last read stay in `progress()`. A child past its restarts
        stays down: `exited()`."""
        done = []
        now = time.monotonic()
        for index, child in enumerate(self.children):
            code = child.process.poll()
            restarts = self.restarts.get(child.role, 0)
            if code is None or child.stopped or restarts >= self.max_restarts:
                continue
            child.down_at = child.down_at or now
            if now - child.down_at < 0.5 * 2 ** restarts:
                continue
            child.log.close()
            self.restarts[child.role] = restarts + 1
            if child.metrics:
                self._retired.append((child.role, child.metrics))
            self.children[index] = self._launch(child.role, child.args, child.metrics_port is not None)
            done.append(f"{child.role} exited ({code}), started again ({self.restarts[child.role]} of "
                        f"{self.max_restarts}); log {self.folder / (child.role + '.log')}")
        return done

    def start(self) -> Stack:
        self.folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, self.workers + 1):
            self.add_worker(n)
        for name in self.integrations:
            self.add_forwarder(name)
        if self.gateway_port is not None:
            self._spawn("gateway", ["gateway", "--follow-config", "--port", str(self.gateway_port)], metrics=False)
        return self

    def add_worker(self, n: int) -> Child:
        return self._spawn(f"worker-{n}", ["worker", "--config", str(self.config), "--data-dir",
                                           str(self.folder / f"worker-{n}"), "--partitions", str(self.partitions),
                                           *self.worker_args])

    def add_forwarder(self, name: str, n: int = 1) -> Child:
        return self._spawn(f"forward-{name}-{n}" if n > 1 else f"forward-{name}",
                           ["forward", name, "--config", str(self.config), "--partitions", str(self.partitions)])

    def describe(self) -> list[str]:
        out = [f"{c.role}: pid {c.process.pid}" + (f", metrics http://127.0.0.1:{c.metrics_port}/metrics"
                                                      if c.metrics_port else "") for c in self.children]
        if self.gateway_port is not None:
            out.append(f"gateway: http://127.0.0.1:{self.gateway_port}/v1/batch (Segment HTTP API)")
        return out

    def exited(self) -> list[str]:
        """The children that are down and will not be started again."""
        return [f"{c.role} (exit {c.process.returncode}, log {self.folder / (c.role + '.log')})"
                for c in self.children if c.process.poll() is not None and not c.stopped
                and self.restarts.get(c.role, 0) >= self.max_restarts]

    def progress(self) -> Progress:
        from streams.metrics import scrape

        progress = Progress(produced=_records(self.bootstrap, self.topics.raw))
        progress.lanes = {name: Lane() for name in self.integrations}
        for child in self.children:
            if child.metrics_port is not None and child.process.poll() is None:
                child.metrics = scrape(child.metrics_port) or child.metrics
        for role, metrics in [*self._retired, *((c.role, c.metrics) for c in self.children)]:
            if role.startswith("worker"):
                self._worker_counts(metrics, progress)
            elif role.startswith("forward-"):
                self._forwarder_counts(metrics, progress)
        return progress

    @staticmethod
    def _worker_counts(metrics: Mapping[str, float], progress: Progress) -> None:
        progress.read += _sum(metrics, "eventrouter_worker_events_in_total")
        progress.deduplicated += _sum(metrics, "eventrouter_worker_deduplicated_total")
        for key, value in metrics.items():
            name, labels = key.split("{")[0], dict(_LABEL.findall(key))
            integration = labels.get("integration", "-")
            if name == "eventrouter_worker_invalid_total" and integration == "-":
                progress.invalid += value
                continue
            lane = progress.lanes.get(integration)
            if lane is None:
                continue
            if name == "eventrouter_worker_events_out_total":
                lane.routed += value
            elif name == "eventrouter_worker_filtered_total":
                lane.filtered += value
            elif name == "eventrouter_worker_invalid_total":
                lane.failed += value

    @staticmethod
    def _forwarder_counts(metrics: Mapping[str, float], progress: Progress) -> None:
        for key, value in metrics.items():
            name, labels = key.split("{")[0], dict(_LABEL.findall(key))
            lane = progress.lanes.get(labels.get("integration", ""))
            if lane is None:
                continue
            if name == "eventrouter_forwarder_delivered_total":
                lane.delivered += value
            elif name == "eventrouter_forwarder_dead_lettered_total":
                lane.dead[labels.get("reason", "?")] = lane.dead.get(labels.get("reason", "?"), 0) + value
            elif name == "eventrouter_forwarder_retried_total":
                lane.retried += value
            elif name == "eventrouter_forwarder_lag":
                lane.lag += value

    def stop_child(self, child: Child, timeout: float = 60.0) -> int | None:
        """SIGTERM by PID (the child drains and commits), SIGKILL if it does not exit in time."""
        child.stopped = True
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait(10)
        child.log.close()
        return child.process.returncode

    def stop(self) -> None:
        """The gateway first (no new events), then the workers, then the forwarders (they deliver what
        the workers routed last)."""
        order = sorted(self.children, key=lambda c: (not c.role.startswith("gateway"),
                                                     not c.role.startswith("worker")))
        for child in order:
            self.stop_child(child)
        self.children = []


def _records(bootstrap: str, topic: str) -> int:
    """Records in a topic (the sum of its partitions' watermark spans); 0 if it does not exist yet."""
    from confluent_kafka import Consumer

    from schemas.kafka import consumer_settings, partition_count, watermarks

    count = partition_count(bootstrap, topic, timeout=5.0)
    if count is None:
        return 0
    consumer = Consumer(consumer_settings(bootstrap, "eventrouter-progress", {"enable.auto.commit": False}))
    try:
        total = 0
        for p in range(count):
            low, high = watermarks(consumer, topic, p, 5.0)
            total += high - low
        return total
    finally:
        consumer.close()


def run_up(stack: Stack, *, every_s: float = 5.0, until: Any = None, start: bool = True) -> int:
    """Run in the foreground, printing progress, until SIGTERM/SIGINT (or `until()`); then stop all.
    A child that exits is started again (`Stack.revive`); one past its restarts stops everything with
    status 1. `start=False`: the stack runs already (the main job's --keep-running)."""
    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    if start:
        stack.start()
        print("\n".join(stack.describe()), flush=True)
    code = 0
    try:
        last = 0.0
        while not stopping and not (until and until()):
            for line in stack.revive():
                print(line, file=sys.stderr, flush=True)
            dead = stack.exited()
            if dead:
                print("stopped unexpectedly: " + "; ".join(dead), file=sys.stderr, flush=True)
                code = 1
                break
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                print(stack.progress().line(), flush=True)
            time.sleep(0.2)
    finally:
        print("stopping: gateway, workers, forwarders (each drains and commits)", flush=True)
        stack.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
