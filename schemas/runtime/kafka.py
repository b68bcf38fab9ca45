"""Kafka client settings every part uses, and topic provisioning. Plain dicts for confluent-kafka."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from schemas.errors import RetryableError
from schemas.runtime.kafka_watch import WATCH, client_callbacks

log = logging.getLogger(__name__)


KAFKA_CONFIG_ENV: Final = "EVENTROUTER_KAFKA_CONFIG"
# The largest record our clients may write: librdkafka's message.max.bytes default (the broker's own,
# 1,048,588, is a little more). Every record we build ourselves (dedup log, dead letters) stays under it
# by construction; one over it fails with MSG_SIZE_TOO_LARGE at every attempt.
RECORD_BYTES: Final = 1_000_000
_SECURITY_KEYS: Final = ("security.protocol", "sasl.", "ssl.", "enable.ssl.certificate.verification")


def security_settings(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The librdkafka security settings every client of ours adds (producers, consumers, admin): from the
    properties file named by $EVENTROUTER_KAFKA_CONFIG (`eventrouter --kafka-config FILE` sets it), e.g.

        security.protocol=SASL_SSL
        sasl.mechanism=SCRAM-SHA-512
        sasl.username=eventrouter
        sasl.password=${KAFKA_PASSWORD}
        ssl.ca.location=/etc/kafka/ca.pem

    Values may be ${ENV} references (resolved here, never logged). Only security settings are taken;
    anything else in the file is a ConfigurationError naming the key."""
    from schemas.errors import ConfigurationError
    from schemas.secrets import resolve_secrets

    env = os.environ if environ is None else environ
    path = env.get(KAFKA_CONFIG_ENV)
    if not path:
        return {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigurationError(f"{KAFKA_CONFIG_ENV}={path}: {exc.strerror}") from None
    settings: dict[str, str] = {}
    problems = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.startswith(_SECURITY_KEYS):
            problems.append(f"line {number}: {key or line[:40]!r} is not a Kafka security setting")
            continue
        settings[key] = value.strip()
    if problems:
        raise ConfigurationError(f"{path}: " + "; ".join(problems))
    resolved: dict[str, str] = resolve_secrets(settings, env)
    return resolved


def admin_settings(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **client_callbacks(), **security_settings(), **(overrides or {})}


def producer_settings(bootstrap: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Durable, ordered, compressed; murmur2 so keys land where Java, aiokafka and Faust expect."""
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 10,
        "partitioner": "murmur2_random",
        "message.timeout.ms": 120_000,
        **client_callbacks(),
        **security_settings(),
    }
    settings.update(overrides or {})
    return settings


def consumer_settings(bootstrap: str, group: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """At-least-once: offsets are stored by the caller only after its work is durable."""
    settings: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        # Read ahead 16 MiB, a second or more of events at 10k/s (librdkafka's default, 64 MiB, is what a
        # worker or forwarder that starts on a backlog holds on top of its own memory).
        "queued.max.messages.kbytes": 16_384,
        **client_callbacks(),
        **security_settings(),
    }
    settings.update(overrides or {})
    return settings


def fetch_settings(gathering_ms: int) -> dict[str, int]:
    """For a consumer that gathers records `gathering_ms` anyway (a forwarder's linger, a worker's batch):
    the broker may hold each fetch for half that (or until 1 MiB is there), so records come in a few large
    fetches, not one per write upstream (every ~5-10 ms). Two forwarders side by side at 5k events/s: 54 ->
    42 us of CPU per event; two workers at 2.5k/s: 186 -> 180. Under 10 ms: librdkafka's defaults (a fetch
    returns as soon as a record is there)."""
    if gathering_ms < 10:
        return {}
    return {"fetch.min.bytes": 1 << 20, "fetch.wait.max.ms": min(gathering_ms // 2, 100)}


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 3, *,
                  config: Mapping[str, str] | None = None, timeout: float = 30.0,
                  client: Mapping[str, Any] | None = None) -> None:
    """Create missing topics (idempotent); raises on any error other than 'already exists'."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient(admin_settings(bootstrap, client))
    wanted = [NewTopic(t, num_partitions=partitions, config=dict(config or {})) for t in topics]
    if not wanted:
        return
    for topic, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if getattr(err, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise
        log.info("created topic %s partitions=%s", topic, partitions)
    # A topic just created is not at once in every broker's metadata: a client asking for its offsets a
    # moment later can be told "unknown partition". Return only once the metadata shows all of them.
    import time

    names = [t.topic for t in wanted]
    deadline = time.monotonic() + timeout
    while True:
        metadata = admin.list_topics(timeout=timeout).topics
        if all(n in metadata and metadata[n].error is None and metadata[n].partitions
               and all(p.leader >= 0 for p in metadata[n].partitions.values()) for n in names):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {names} not in the cluster metadata after {timeout:.0f} s")
        time.sleep(0.05)


def partition_count(bootstrap: str, topic: str, timeout: float = 30.0,
                    client: Mapping[str, Any] | None = None) -> int | None:
    """The topic's number of partitions, or None if it does not exist."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient(admin_settings(bootstrap, client)).list_topics(topic, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        return None
    return len(found.partitions)


class BrokerUnreachable(RetryableError):
    """No broker of the bootstrap list answered within the time given."""


def wait_for_brokers(bootstrap: str, timeout: float | None = None, *, meanwhile: str | None = None,
                     client: Mapping[str, Any] | None = None) -> None:
    """Return once the cluster answers a metadata request. Meanwhile the process's BrokerWatch says once
    which address it cannot reach and `meanwhile` (what the process does), and nothing more until that
    changes. With a timeout: BrokerUnreachable after it, in one line."""
    import time

    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    if meanwhile is not None:
        WATCH.meanwhile = meanwhile
    admin = AdminClient(admin_settings(bootstrap, client))
    started = time.monotonic()
    while True:
        left = None if timeout is None else timeout - (time.monotonic() - started)
        if left is not None and left <= 0:
            raise BrokerUnreachable(f"no broker of {bootstrap} answered within {timeout:.0f} s")
        try:
            metadata = admin.list_topics(timeout=min(5.0, left) if left is not None else 5.0)
        except KafkaException:
            admin.poll(0.5)  # serves the error callbacks (the BrokerWatch); a refused connection fails at once
            continue
        for broker in metadata.brokers.values():
            WATCH.reachable(f"{broker.host}:{broker.port}")
        for address in bootstrap.split(","):
            WATCH.reachable(address.strip().split("://")[-1])
        return


_NOT_READY = frozenset({"NOT_LEADER_FOR_PARTITION", "LEADER_NOT_AVAILABLE", "UNKNOWN_TOPIC_OR_PART",
                        "NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS", "_UNKNOWN_PARTITION"})


def flush_until_acknowledged(producer: Any, what: str) -> None:
    """Flush `producer` until Kafka acknowledged every record (librdkafka retries while the broker is
    away). A wait over 5 s is said once, and its end once: not a line every 5 s of an outage."""
    started = None
    while producer.flush(5.0):
        if started is None:
            started = time.monotonic() - 5.0
            log.warning("%s still unacknowledged after 5 s; waiting for Kafka", what)
    if started is not None:
        log.info("%s acknowledged after %.0f s", what, time.monotonic() - started)


def watermarks(consumer: Any, topic: str, partition: int, timeout: float = 30.0) -> tuple[int, int]:
    """(low, high) offsets of a partition, asking again while a topic just made has no leader yet (a
    fresh broker answers "not leader" for a moment after the metadata shows the topic)."""
    import time

    from confluent_kafka import KafkaException, TopicPartition

    deadline = time.monotonic() + timeout
    while True:
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if getattr(error, "name", lambda: "")() not in _NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class RejoinWatch:
    """Whether a consumer that lost its partitions is overdue to be given some again. A member whose
    session timed out while the coordinator did not answer (a broker frozen for 15 s) rejoins by
    itself once the broker answers, and its `on_assign` runs again (with an empty list if the group
    has nothing for it). Once in many such freezes, a librdkafka consumer stayed out of its group for
    minutes with the broker answering: past `deadline_s` after the loss, the process replaces it. A
    replacement made while the broker was still frozen can be stuck the same way (its coordinator
    requests never sent): it too is replaced if no assignment comes within `deadline_s`."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self._lost_at: float | None = None

    def lost(self) -> None:
        self._lost_at = time.monotonic()

    def assigned(self) -> None:
        self._lost_at = None

    def replaced(self) -> None:
        """The consumer was replaced: the new one has `deadline_s` to be given partitions (or an empty
        assignment), or it is replaced in turn."""
        self._lost_at = time.monotonic()

    def overdue(self) -> bool:
        return self._lost_at is not None and time.monotonic() - self._lost_at > self.deadline_s
