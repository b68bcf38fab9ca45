"""Pure rendering of KRaft broker configuration: no processes, no I/O."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

from eventrouter.dev.localkafka.security import Security

DEFAULT_KAFKA_VERSION = "4.4.0"


@dataclass(frozen=True)
class NodeSpec:
    """One combined broker+controller node of a local cluster."""

    node_id: int
    port: int
    controller_port: int
    log_dir: str

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to render and start a local KRaft cluster."""

    cluster_id: str
    nodes: tuple[NodeSpec, ...]
    auto_create_topics: bool = False
    security: Security | None = None  # SASL/SCRAM (and TLS) on the client listener

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def replication_factor(self) -> int:
        return min(3, len(self.nodes))

    @property
    def min_insync_replicas(self) -> int:
        return 2 if len(self.nodes) >= 3 else 1


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes as url-safe base64 without padding (22 chars).

    Like Kafka's own Uuid.randomUuid, never starting with '-' (command lines read that as an option).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def server_properties(spec: ClusterSpec, node: NodeSpec) -> str:
    """The server.properties text for one node; tuned for fast starts on a small machine."""
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in spec.nodes)
    rf = spec.replication_factor
    isr = spec.min_insync_replicas
    name = spec.security.protocol if spec.security else "PLAINTEXT"
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"{name}://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"{name}://127.0.0.1:{node.port}",
        "inter.broker.listener.name": name,
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{name}:{name}",
        "log.dirs": node.log_dir,
        "num.partitions": "1",
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(isr),
        "offsets.topic.replication.factor": str(rf),
        "offsets.topic.num.partitions": "1" if rf == 1 else "3",
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(isr),
        "transaction.state.log.num.partitions": "1" if rf == 1 else "3",
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(isr),
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        "auto.create.topics.enable": "true" if spec.auto_create_topics else "false",
        # Raw topics keep events with old event times (backfill): retention is by size/operator.
        "log.retention.hours": "168",
        **(spec.security.broker_properties() if spec.security else {}),
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J2_PROPERTIES = """\
status = error
name = eventrouter-embedded-kafka
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRefs = stdout
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
logger.server.name = kafka.server.KafkaBroker
logger.server.level = INFO
"""
