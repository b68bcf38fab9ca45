"""Start, stop and inspect a local KRaft Kafka cluster (1 or 3 nodes) from its state directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from eventrouter.dev.localkafka.config import (
    DEFAULT_KAFKA_VERSION,
    LOG4J2_PROPERTIES,
    ClusterSpec,
    NodeSpec,
    new_cluster_id,
    server_properties,
)
from eventrouter.dev.localkafka.errors import StartError
from eventrouter.dev.localkafka.fetch import ensure_jars, libs_dir, require_java
from eventrouter.dev.localkafka.security import Security, new_security

log = logging.getLogger(__name__)

_HEAP = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
         "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]
# More JVM options for the broker, after ours (the last of a repeated -XX option wins): the benchmarks give
# it the JVM's full JIT (a long-running broker's), where tests want the quick start of the first tier only.
JVM_OPTIONS_ENV = "EVENTROUTER_KAFKA_JVM_OPTS"


@dataclass(frozen=True)
class NodeStatus:
    node_id: int
    pid: int | None
    running: bool
    bootstrap: str
    rss_mib: float | None


@dataclass(frozen=True)
class ClusterStatus:
    running: bool
    bootstrap: str | None
    nodes: tuple[NodeStatus, ...]
    kafka_version: str | None


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free now (bound together so they are distinct)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class LocalKafka:
    """A local Kafka cluster whose whole state (config, data, logs, PIDs) lives in `state_dir`."""

    def __init__(self, state_dir: Path, cache_dir: Path, version: str = DEFAULT_KAFKA_VERSION) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.cache_dir = Path(cache_dir).resolve()
        self.version = version

    # ---- state file -------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.state_dir / "cluster.json"

    def _load(self) -> tuple[ClusterSpec, dict[int, int]] | None:
        try:
            raw = json.loads(self._state_file.read_text())
        except (OSError, ValueError):
            return None
        nodes = tuple(NodeSpec(**n) for n in raw["nodes"])
        security = raw.get("security")
        spec = ClusterSpec(cluster_id=raw["cluster_id"], nodes=nodes,
                           security=Security(tuple(tuple(u) for u in security["users"]), security["broker_password"],
                                             security["tls_dir"], security["store_password"]) if security else None,
                           auto_create_topics=raw.get("auto_create_topics", False))
        pids = {int(k): int(v) for k, v in raw.get("pids", {}).items()}
        return spec, pids

    def _save(self, spec: ClusterSpec, pids: dict[int, int]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "cluster_id": spec.cluster_id,
            "kafka_version": self.version,
            "bootstrap": spec.bootstrap,
            "auto_create_topics": spec.auto_create_topics,
            "nodes": [asdict(n) for n in spec.nodes],
            "security": asdict(spec.security) if spec.security else None,
            "pids": {str(k): v for k, v in pids.items()},
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self._state_file)

    def _node_dir(self, node_id: int) -> Path:
        return self.state_dir / f"node-{node_id}"

    def _is_ours(self, pid: int, node_id: int) -> bool:
        """True when `pid` is alive and is the broker we started for `node_id` (PIDs get reused)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(self._node_dir(node_id) / "server.properties") in cmdline

    # ---- lifecycle --------------------------------------------------------------------
    def start(self, nodes: int = 1, port: int | None = None, timeout: float = 120.0, *,
              scram_users: dict[str, str] | None = None, tls: bool = False) -> ClusterStatus:
        """Start the cluster (fetching jars on first use); return once every broker answers metadata.
        `scram_users`: SASL/SCRAM-SHA-512 on the client listener with these users (and TLS if `tls`);
        `client_properties()` then gives a client's settings."""
        java = require_java()
        libs = ensure_jars(self.cache_dir, self.version)
        loaded = self._load()
        if loaded is not None and any(self._is_ours(p, n) for n, p in loaded[1].items()):
            spec = loaded[0]
            self._wait_ready(spec, {}, timeout)
            return self.status()
        spec = loaded[0] if loaded is not None and len(loaded[0].nodes) == nodes else self._new_spec(nodes, port)
        if scram_users and spec.security is None:
            spec = replace(spec, security=new_security(scram_users, self.state_dir / "tls" if tls else None))
        busy = [n.port for n in spec.nodes if _port_open(n.port)] + [
            n.controller_port for n in spec.nodes if _port_open(n.controller_port)]
        if busy:
            raise StartError(f"ports already in use: {busy}; stop the other process or pick --port")
        classpath = f"{libs}/*"
        with ThreadPoolExecutor(max_workers=len(spec.nodes)) as pool:
            list(pool.map(lambda n: self._prepare_node(java, classpath, spec, n), spec.nodes))
        procs = {node.node_id: self._launch(java, classpath, node.node_id) for node in spec.nodes}
        self._save(spec, {n: p.pid for n, p in procs.items()})
        try:
            self._wait_ready(spec, procs, timeout)
        except BaseException:
            self.stop()
            raise
        return self.status()

    def _new_spec(self, nodes: int, port: int | None) -> ClusterSpec:
        if nodes not in (1, 3):
            raise StartError(f"--nodes must be 1 or 3, got {nodes}")
        ports = free_ports(nodes * 2)
        if port is not None:
            ports[0] = port
        specs = tuple(
            NodeSpec(node_id=i + 1, port=(port + i if port is not None else ports[i]),
                     controller_port=ports[nodes + i], log_dir=str(self._node_dir(i + 1) / "data"))
            for i in range(nodes)
        )
        return ClusterSpec(cluster_id=new_cluster_id(), nodes=specs)

    def _prepare_node(self, java: str, classpath: str, spec: ClusterSpec, node: NodeSpec) -> None:
        node_dir = self._node_dir(node.node_id)
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "server.properties").write_text(server_properties(spec, node))
        (node_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        if (Path(node.log_dir) / "meta.properties").exists():
            return
        proc = subprocess.run(
            [java, "-Xmx256m", "-XX:TieredStopAtLevel=1", "-cp", classpath,
             f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
             "kafka.tools.StorageTool", "format", f"--cluster-id={spec.cluster_id}",
             "-c", str(node_dir / "server.properties"), "--ignore-formatted",
             *(spec.security.scram_arguments() if spec.security else [])],
            capture_output=True, text=True, timeout=120,
        )
        if proc.returncode != 0:
            raise StartError(f"formatting node {node.node_id} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")

    def _launch(self, java: str, classpath: str, node_id: int) -> subprocess.Popen[bytes]:
        node_dir = self._node_dir(node_id)
        with open(node_dir / "broker.log", "ab") as logfile:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [java, *_HEAP, *os.environ.get(JVM_OPTIONS_ENV, "").split(), "-cp", classpath,
                 f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
                 "kafka.Kafka", str(node_dir / "server.properties")],
                stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it; stopped by PID
            )
        log.info("started kafka node %s pid %s", node_id, proc.pid)
        return proc

    def _wait_ready(self, spec: ClusterSpec, procs: dict[int, subprocess.Popen[bytes]], timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        last_err: Exception | None = None

        def check_alive() -> None:
            # The Popen handle, not /proc/PID/cmdline: right after exec the latter can still be empty.
            for node_id, proc in procs.items():
                if proc.poll() is not None:
                    raise StartError(f"kafka node {node_id} exited ({proc.returncode}) during start:\n"
                                     f"{self.log_tail(node_id)}")

        # Wait for the listeners first, so the client does not log a refused connection every 50 ms.
        while not all(_port_open(n.port) for n in spec.nodes) and time.monotonic() < deadline:
            check_alive()
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": spec.bootstrap, "socket.timeout.ms": 2000,
                             **(spec.security.admin_client() if spec.security else {})},
                            logger=logging.getLogger("eventrouter.dev.localkafka.client"))
        while time.monotonic() < deadline:
            check_alive()
            try:
                md = admin.list_topics(timeout=2)
                if len(md.brokers) >= len(spec.nodes):
                    return
            except Exception as exc:  # noqa: BLE001 - any client error means "not ready yet"
                last_err = exc
            time.sleep(0.2)
        raise StartError(f"kafka not ready after {timeout:.0f}s ({last_err}):\n{self.log_tail(spec.nodes[0].node_id)}")

    def client_properties(self, user: str, password: str) -> str:
        """A client's security settings for $EVENTROUTER_KAFKA_CONFIG ("" when the cluster has none)."""
        loaded = self._load()
        security = loaded[0].security if loaded is not None else None
        return security.client_properties(user, password) if security else ""

    def log_tail(self, node_id: int, chars: int = 3000) -> str:
        try:
            return (self._node_dir(node_id) / "broker.log").read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop_node(self, node_id: int, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop one node by its PID (SIGTERM, or SIGKILL when `kill`)."""
        loaded = self._load()
        if loaded is None:
            return
        pid = loaded[1].get(node_id)
        if pid is None or not self._is_ours(pid, node_id):
            return
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self._is_ours(pid, node_id) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if self._is_ours(pid, node_id):
            os.kill(pid, signal.SIGKILL)
            while self._is_ours(pid, node_id):
                _reap(pid)
                time.sleep(0.05)

    def restart_node(self, node_id: int, timeout: float = 120.0) -> None:
        """Start a stopped node again with its old ports and data."""
        loaded = self._load()
        if loaded is None:
            raise StartError("no cluster state to restart from")
        spec, pids = loaded
        java = require_java()
        classpath = f"{libs_dir(self.cache_dir, self.version)}/*"
        proc = self._launch(java, classpath, node_id)
        pids[node_id] = proc.pid
        self._save(spec, pids)
        self._wait_ready(spec, {node_id: proc}, timeout)

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop every node by PID. Returns True if anything was running."""
        loaded = self._load()
        if loaded is None:
            return False
        _spec, pids = loaded
        alive = [n for n, p in pids.items() if self._is_ours(p, n)]
        with ThreadPoolExecutor(max_workers=max(1, len(alive))) as pool:
            list(pool.map(lambda n: self.stop_node(n, timeout=timeout), alive))
        return bool(alive)

    def status(self) -> ClusterStatus:
        loaded = self._load()
        if loaded is None:
            return ClusterStatus(running=False, bootstrap=None, nodes=(), kafka_version=None)
        spec, pids = loaded
        nodes = []
        for n in spec.nodes:
            pid = pids.get(n.node_id)
            running = pid is not None and self._is_ours(pid, n.node_id)
            nodes.append(NodeStatus(node_id=n.node_id, pid=pid if running else None, running=running,
                                    bootstrap=n.bootstrap, rss_mib=_rss_mib(pid) if running and pid else None))
        return ClusterStatus(running=any(n.running for n in nodes), bootstrap=spec.bootstrap,
                             nodes=tuple(nodes), kafka_version=self.version)


def _reap(pid: int) -> None:
    """Collect a child we started in this process, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
