"""The pipeline's processes against one broker (`eventrouter up CONFIG`, and the main job): the HTTP
gateway, stream workers, and a forwarder per integration, each a child process with its own log and
metrics port and the least environment (eventrouter/environment.py: a forwarder its own integration's
secrets only), stopped by its PID. A child that exits on its own is started again (`revive()`), after 1,
2, 4 ... s (at most 60 s) while it keeps failing, forever: no child stops the others; one that keeps
failing is reported (`failing()`, the progress line, `up.prom`'s metrics). `progress()` reads every
stage's counters (the raw topic's size, the workers' and forwarders' metrics) into one account per
integration, and rides out a broker that does not answer (`broker unreachable since ...`). The foreground
loop that drives it is eventrouter/supervise.py."""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from eventrouter.environment import SET_NAMES_ENV, child_environment
from eventrouter.packs import packs_for, repack
from eventrouter.progress import Lane, Progress, failing_integrations, forwarder_counts, raw_records, worker_counts
from schemas import Topics
from schemas.config import Config, load_config
from schemas.secrets import referenced_names

__all__ = ["Child", "Lane", "Progress", "Stack", "free_port"]

METRICS_FILE = "up.prom"  # beside up.json: the supervisor's view as Prometheus metrics


def delivered_specs(config: Config) -> dict[str, str]:
    """The integrations a config delivers to (enabled, named by a pipeline), each with what its forwarder
    reads: its kind, connection and delivery settings."""
    named = {name for p in config.pipelines for name in p.integrations}
    return {i.name: orjson.dumps([i.kind, i.connection, i.delivery.model_dump(mode="json")],
                                 option=orjson.OPT_SORT_KEYS).decode()
            for i in config.integrations if i.enabled and i.name in named}


def forwarder_plan(running: Mapping[str, str], wanted: Mapping[str, str]) -> tuple[set[str], set[str], set[str]]:
    """(to start, to start again, to stop): forwarders for a new revision, from what each runs for."""
    return (set(wanted) - set(running), {n for n in set(wanted) & set(running) if wanted[n] != running[n]},
            set(running) - set(wanted))


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
    started_at: float = field(default_factory=time.monotonic)
    down_at: float | None = None  # when it was first seen exited (monotonic)
    retry_at: float = 0.0  # when it is started again (monotonic), once down


class Stack:
    """The processes for `config` (its integrations: a forwarder each), which the caller has applied as
    the newest revision already (`up` does): the workers follow the config topic; they are not given the
    file, so that one integration their config check would refuse cannot keep them all from starting."""

    def __init__(self, bootstrap: str, topics: Topics, config: Path, folder: Path, *, gateway_port: int | None = 0,
                 workers: int = 1, env: Mapping[str, str] | None = None, partitions: int = 3,
                 worker_args: Sequence[str] = (), console_port: int | None = None,
                 console_users: Path | None = None, engine: str = "kafka", forwarder_processes: int = 0) -> None:
        self.worker_args = list(worker_args)  # more `eventrouter worker` options (bench/soak.py)
        self.engine = engine  # the workers' (`eventrouter worker --engine`)
        # 0: a forwarder process per integration; N: the integrations packed into N (eventrouter/packs.py)
        self.forwarder_processes = forwarder_processes
        self.packs: list[list[str]] = []
        self.bootstrap, self.topics, self.config, self.folder = bootstrap, topics, config, folder
        self.gateway_port = free_port() if gateway_port == 0 else gateway_port
        self.console_port = free_port() if console_port == 0 else console_port
        self.console_users = console_users or folder / "console-users.json"
        self.workers, self.partitions = workers, partitions
        self.env = {**os.environ, **(env or {})}  # where each child's environment is taken from
        parsed = load_config(config)
        named = {name for p in parsed.pipelines for name in p.integrations}
        self.integrations = [i.name for i in parsed.integrations if i.enabled and i.name in named]
        # the `${ENV}` names each forwarder resolves: it is given those, no other integration's
        self.references = {i.name: referenced_names(i.connection) for i in parsed.integrations}
        self.specs = delivered_specs(parsed)  # what each forwarder was started for (follow() compares)
        self.children: list[Child] = []
        self.max_restarts = 3       # exits in a row after which a child counts as `exited()` (still retried)
        self.first_delay_s, self.max_delay_s = 1.0, 60.0  # back-off of a child that keeps exiting
        self.healthy_after_s = 60.0  # up this long: its next exit starts the back-off anew
        self.restarts: dict[str, int] = {}   # per role, since the start
        self.failures: dict[str, int] = {}   # per role: exits in a row, each within healthy_after_s of its start
        self.last_exit: dict[str, int] = {}
        self.broker_down_since: float | None = None  # epoch seconds
        self._produced = 0
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
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment(args))
        return Child(role, process, log, port, list(args))

    def environment(self, args: Sequence[str]) -> dict[str, str]:
        """The environment of the child that runs `eventrouter ARGS` (eventrouter/environment.py): a
        forwarder's holds its integration's `${ENV}` names; a worker's and the gateway's no vendor's."""
        names: set[str] = set()
        if args and args[0] == "forward":  # its integrations: the arguments before the first option
            for name in itertools.takewhile(lambda a: not a.startswith("--"), args[1:]):
                names |= self.references.get(name, set())
        env = child_environment(self.env, names)
        if args and args[0] == "console":  # which names are set where the forwarders start: names, no value
            # (every name set here, so an integration added later is judged right too)
            env[SET_NAMES_ENV] = ",".join(sorted(n for n, v in self.env.items() if v and "," not in n))
        return env

    def revive(self) -> list[str]:
        """Start again each child that exited on its own (a crash, a start that failed: a port taken, the
        broker not ready, a config its forwarder refuses), 1, 2, 4 ... s (at most `max_delay_s`) after it
        was seen down while it keeps exiting, for ever; what was done, one line each. Its counters as last
        read stay in `progress()`. A child that stayed up `healthy_after_s` starts from the first delay again."""
        done = []
        now = time.monotonic()
        for index, child in enumerate(self.children):
            code = child.process.poll()
            role = child.role
            if code is None:
                if role in self.failures and now - child.started_at >= self.healthy_after_s:
                    del self.failures[role]
                continue
            if child.stopped:
                continue
            log = self.folder / f"{role}.log"
            if child.down_at is None:
                child.down_at = now
                quick = now - child.started_at < self.healthy_after_s
                streak = self.failures.get(role, 0) if quick else 0
                self.failures[role] = streak + 1
                self.last_exit[role] = code
                delay = min(self.max_delay_s, self.first_delay_s * 2 ** streak)
                child.retry_at = now + delay
                done.append(f"{role} exited ({code}); starting it again in {delay:.0f} s "
                            f"({self.failures[role]} exits in a row); log {log}")
            if now < child.retry_at:
                continue
            child.log.close()
            self.restarts[role] = self.restarts.get(role, 0) + 1
            if child.metrics:
                self._retired.append((role, child.metrics))
            self.children[index] = self._launch(role, child.args, child.metrics_port is not None)
            done.append(f"{role} started again (restart {self.restarts[role]}); log {log}")
        return done

    def retry_now(self) -> None:
        """Children waiting out their back-off are started at the next `revive()` (the broker is back)."""
        for child in self.children:
            if child.down_at is not None:
                child.retry_at = 0.0

    def _failing(self, child: Child) -> bool:
        return not child.stopped and (child.down_at is not None or self.failures.get(child.role, 0) >= 2)

    def failing(self) -> list[str]:
        """The children down now, or up again after exiting twice or more in a row (a start that failed once
        is a restart, not a failure): exit code, exits in a row, the next try, log; one line each."""
        now = time.monotonic()
        out = []
        for child in self.children:
            if not self._failing(child):
                continue
            role = child.role
            state = f"retrying in {max(0.0, child.retry_at - now):.0f} s" if child.down_at is not None else \
                f"started again {now - child.started_at:.0f} s ago"
            out.append(f"{role} (exit {self.last_exit.get(role)}, {self.failures[role]} exits in a row, {state}, "
                       f"log {self.folder / (role + '.log')})")
        for child in self.children:  # an integration inside a pack that cannot start, or stopped on an error
            if child.role.startswith("forwarders-") and not child.stopped:
                out += [f"{name} in {child.role} (cannot start, or stopped on an error; started again with "
                        f"back-off; log {self.folder / (child.role + '.log')})"
                        for name in failing_integrations(child.metrics)]
        return out

    def write_metrics(self) -> None:
        """`up.prom` in the logs folder, in Prometheus' text format (for node_exporter's textfile collector,
        or any scraper of files): per child whether it is failing and how often it was started again, and
        whether the broker answers. Replaced atomically."""
        from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

        registry = CollectorRegistry()
        failing = Gauge("eventrouter_up_child_failing", "1 while a child of eventrouter up is down or keeps "
                        "exiting (retried with back-off), else 0", ["role"], registry=registry)
        restarts = Gauge("eventrouter_up_child_restarts", "Times a child of eventrouter up was started again "
                         "since up started", ["role"], registry=registry)
        for child in self.children:
            if not child.stopped:
                inside = child.role.startswith("forwarders-") and bool(failing_integrations(child.metrics))
                failing.labels(child.role).set(1 if self._failing(child) or inside else 0)
                restarts.labels(child.role).set(self.restarts.get(child.role, 0))
        Gauge("eventrouter_up_broker_unreachable", "1 while the broker does not answer eventrouter up, else 0",
              registry=registry).set(0 if self.broker_down_since is None else 1)
        write_to_textfile(str(self.folder / METRICS_FILE), registry)

    def start(self) -> Stack:
        self.folder.mkdir(parents=True, exist_ok=True)
        for n in range(1, self.workers + 1):
            self.add_worker(n)
        if self.forwarder_processes:
            self.packs = packs_for(self.integrations, self.forwarder_processes)
            for index, pack in enumerate(self.packs):
                self.add_pack(index, pack)
        else:
            for name in self.integrations:
                self.add_forwarder(name)
        if self.gateway_port is not None:
            self._spawn("gateway", ["gateway", "--follow-config", "--port", str(self.gateway_port)], metrics=False)
        if self.console_port is not None:
            self._spawn("console", ["console", "--port", str(self.console_port), "--users", str(self.console_users)],
                        metrics=False)
        return self

    def add_worker(self, n: int) -> Child:
        return self._spawn(f"worker-{n}", ["worker", "--data-dir",
                                           str(self.folder / f"worker-{n}"), "--partitions", str(self.partitions),
                                           "--engine", self.engine, *self.worker_args])

    def add_forwarder(self, name: str, n: int = 1) -> Child:
        """A forwarder reads its integration from the config topic's newest revision (`up` applied the file
        as one): one started again after a new revision reads that one."""
        role = f"forward-{name}-{n}" if n > 1 else f"forward-{name}"
        return self._spawn(role, ["forward", name, "--partitions", str(self.partitions),
                                  "--data-dir", str(self.folder / role)])

    def add_pack(self, index: int, names: Sequence[str]) -> Child:
        """One process for the integrations `names` (forwarders/host.py), each isolated on its own thread."""
        role = f"forwarders-{index + 1}"
        return self._spawn(role, ["forward", *names, "--partitions", str(self.partitions),
                                  "--data-dir", str(self.folder / role)])

    def _follow_packs(self, start: set[str], restart: set[str], stop: set[str]) -> dict[str, str]:
        """The packs after a new revision: those it touches started again; each integration's pack role."""
        packs, touched = repack(self.packs, start, restart, stop, self.forwarder_processes)
        for child in [c for c in self.children if not c.stopped and c.role.startswith("forwarders-")]:
            if int(child.role.rsplit("-", 1)[1]) - 1 in touched:
                self._retire(child)
        for index in sorted(touched):
            if packs[index]:
                self.add_pack(index, packs[index])
        self.packs = packs
        return self._pack_roles()

    def _retire(self, child: Child) -> None:
        """Stop a forwarder a new revision replaces or removes: its counters kept (once), its lag not."""
        self.stop_child(child)
        self.children.remove(child)
        self._retired.append((child.role, {k: v for k, v in child.metrics.items()
                                           if not k.startswith("eventrouter_forwarder_lag")}))

    def _pack_roles(self) -> dict[str, str]:
        return {name: f"forwarders-{i + 1}" for i, pack in enumerate(self.packs) for name in pack}

    def follow(self, number: int, config: Config) -> list[str]:
        """A new config revision in force (the console saved one, or `config apply`): a forwarder started
        for each integration it delivers that has none, started again where its kind, connection or
        delivery settings changed, stopped where it is no longer delivered to; what was done, a line each."""
        wanted = delivered_specs(config)
        start, restart, stop = forwarder_plan(self.specs, wanted)
        self.references.update({i.name: referenced_names(i.connection) for i in config.integrations})
        done = []
        if self.forwarder_processes:
            before = self._pack_roles()
            after = self._follow_packs(start, restart, stop)
            roles = {name: f"{name} ({after.get(name) or before.get(name)})" for name in start | restart | stop}
        else:
            for child in [c for c in self.children if not c.stopped and c.role.startswith("forward-")]:
                name = child.args[1]
                if name in stop or name in restart:
                    self._retire(child)
            for name in sorted(start | restart):
                self.add_forwarder(name)
            roles = {name: f"forward-{name}" for name in start | restart | stop}
        for name in sorted(start):
            done.append(f"{roles[name]} started: revision {number} delivers to it")
        for name in sorted(restart):
            done.append(f"{roles[name]} started again: revision {number} changed its settings")
        for name in sorted(stop):
            done.append(f"{roles[name]} stopped: revision {number} no longer delivers to it")
        self.specs = wanted
        self.integrations = sorted(wanted)
        return done

    def describe(self) -> list[str]:
        out = [f"{c.role}: pid {c.process.pid}" + (f" ({self.engine} engine)" if c.role.startswith("worker") else "")
               + (f", metrics http://127.0.0.1:{c.metrics_port}/metrics"
                                                      if c.metrics_port else "") for c in self.children]
        if self.gateway_port is not None:
            out.append(f"gateway: http://127.0.0.1:{self.gateway_port}/v1/batch (Segment HTTP API)")
        if self.console_port is not None:
            out.append(f"console: http://127.0.0.1:{self.console_port}/ (users: {self.console_users}; with none, "
                       f"its one-time bootstrap token is in {self.folder / 'console.log'})")
        return out

    def exited(self) -> list[str]:
        """The children that keep exiting: `max_restarts` exits or more in a row (each is still retried)."""
        return [f"{c.role} (exit {self.last_exit.get(c.role)}, log {self.folder / (c.role + '.log')})"
                for c in self.children if not c.stopped and self.failures.get(c.role, 0) >= self.max_restarts]

    def progress(self) -> Progress:
        from confluent_kafka import KafkaException

        from streams.metrics import scrape

        try:
            self._produced = raw_records(self.bootstrap, self.topics.raw)
        except (KafkaException, TimeoutError):  # the broker does not answer: the account goes on without it
            if self.broker_down_since is None:
                self.broker_down_since = time.time()
        else:
            if self.broker_down_since is not None:
                self.broker_down_since = None
                self.retry_now()  # what failed to start while it was away need not wait out its back-off
        progress = Progress(produced=self._produced, broker_down_since=self.broker_down_since,
                            failing=self.failing())
        progress.lanes = {name: Lane() for name in self.integrations}
        for child in self.children:
            if child.metrics_port is not None and child.process.poll() is None:
                child.metrics = scrape(child.metrics_port) or child.metrics
        for role, metrics in [*self._retired, *((c.role, c.metrics) for c in self.children)]:
            if role.startswith("worker"):
                worker_counts(metrics, progress)
            elif role.startswith(("forward-", "forwarders-")):
                forwarder_counts(metrics, progress)
        return progress

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
