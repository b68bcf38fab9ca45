"""An embedded, real Apache Kafka (KRaft) broker fetched from Maven Central and run with local Java."""

from eventrouter.dev.localkafka.cluster import ClusterStatus, LocalKafka, NodeStatus, free_ports
from eventrouter.dev.localkafka.config import DEFAULT_KAFKA_VERSION
from eventrouter.dev.localkafka.errors import FetchError, LocalKafkaError, StartError, ToolMissingError

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "ClusterStatus",
    "FetchError",
    "LocalKafka",
    "LocalKafkaError",
    "NodeStatus",
    "StartError",
    "ToolMissingError",
    "free_ports",
]
