"""`eventrouter status`: the config revision in force, the stream workers' lag on the raw topic, the
invalid topic's dead letters, and for each integration its forwarders' lag (topic and retry topic) and
its dead letters, from the broker (watermarks and the consumer groups' committed offsets). What only the
processes know (records read, rejected before routing, duplicates dropped, children failing) comes from
the account a running `eventrouter up` leaves in its logs folder (`up.json`), when there is one.

A broker that does not answer within `timeout` seconds is said in one line (`BrokerUnreachable`), after
what the processes' account shows, if any."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eventrouter.progress import Snapshot, unreachable
from schemas import Topics
from schemas.errors import EventRouterError
from schemas.runtime.kafka import admin_settings, consumer_settings, partition_count, watermarks
from schemas.runtime.revisions import ConfigStore


class BrokerUnreachable(EventRouterError):
    """The broker did not answer in time: `status` says which address, and exits 1."""


@dataclass(frozen=True)
class Backlog:
    records: int       # records in the topic (between its watermarks)
    lag: int | None    # not yet processed by the group (None: the topic does not exist)


@dataclass(frozen=True)
class IntegrationStatus:
    name: str
    kind: str
    enabled: bool
    topic: Backlog
    retry: Backlog
    dead_letters: int


@dataclass(frozen=True)
class Status:
    revision: int | None
    revision_summary: str
    raw: Backlog
    invalid: int       # records in the invalid topic: rejected before routing, and playbook errors
    integrations: list[IntegrationStatus]
    invalid_topic: str = "invalid"

    def lines(self) -> list[str]:
        out = [f"config: {self.revision_summary}",
               f"raw: {self.raw.records} records, worker lag {_lag(self.raw.lag)}; dead letters in "
               f"{self.invalid_topic} (rejected before routing, and playbook errors): {self.invalid}",
               f"{'integration':<20} {'kind':<10} {'routed':>9} {'lag':>8} {'retrying':>9} {'dead letters':>13}"]
        for i in self.integrations:
            out.append(f"{i.name:<20} {i.kind:<10} {i.topic.records:>9} {_lag(i.topic.lag):>8} "
                       f"{_lag(i.retry.lag):>9} {i.dead_letters:>13}" + ("" if i.enabled else "  (disabled)"))
        return out


def process_lines(snapshot: Snapshot | None, folder: Any, now: float | None = None) -> list[str]:
    """What a running `up` counted (its workers' and forwarders' metrics, restarted ones included), or
    where it would be."""
    if snapshot is None:
        return [f"processes: no running `eventrouter up` with this prefix left its account in {folder} "
                "(--logs); the workers' /metrics count duplicates dropped (eventrouter_worker_deduplicated_total)"]
    p = snapshot.progress
    now = time.time() if now is None else now
    out = [f"processes (eventrouter up, pid {snapshot.pid}, as of "
           f"{time.strftime('%H:%M:%S', time.localtime(snapshot.written))}, {now - snapshot.written:.0f} s ago):",
           f"  workers: read {p.read:.0f} = rejected before routing {p.invalid:.0f} + duplicates dropped "
           f"{p.deduplicated:.0f} + routable {p.read - p.invalid - p.deduplicated:.0f}"]
    for name, lane in sorted(p.lanes.items()):
        out.append(f"  {name}: routed {lane.routed:.0f}, filtered {lane.filtered:.0f}, playbook errors "
                   f"{lane.failed:.0f}, delivered {lane.delivered:.0f}, dead-lettered {sum(lane.dead.values()):.0f}")
    if p.stalls:
        out.append(f"  workers stalled {p.stalls:.0f} times: records waited on their partitions and the engine handed "
                   "none over (each worker's log says what it did: read again, or exit to be started afresh)")
    out += [f"  failing: {line}" for line in p.failing]
    if p.broker_down_since is not None:
        out.append(f"  {unreachable(p.broker_down_since, snapshot.written)} (as `up` saw it)")
    return out


def _lag(lag: int | None) -> str:
    return "-" if lag is None else str(lag)


def backlog(bootstrap: str, topic: str, group: str, client: Mapping[str, Any] | None = None,
            timeout: float = 10.0) -> Backlog:
    """Records in `topic` and how many of them `group` has not committed yet (never joins the group)."""
    from confluent_kafka import Consumer, TopicPartition

    count = partition_count(bootstrap, topic, timeout=timeout, client=client)
    if count is None:
        return Backlog(0, None)
    consumer = Consumer(consumer_settings(bootstrap, group, {"enable.auto.commit": False, **(client or {})}))
    try:
        tps = [TopicPartition(topic, p) for p in range(count)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(tps, timeout=timeout)}
        records = lag = 0
        for tp in tps:
            low, high = watermarks(consumer, topic, tp.partition, timeout)
            records += high - low
            done = committed.get(tp.partition, -1)
            lag += high - (done if done >= 0 else low)
        return Backlog(records, lag)
    finally:
        consumer.close()


def reachable(bootstrap: str, client: Mapping[str, Any] | None = None, timeout: float = 10.0) -> None:
    """Raise BrokerUnreachable unless the cluster's metadata comes within `timeout` seconds."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        AdminClient(admin_settings(bootstrap, client)).list_topics(timeout=timeout)
    except KafkaException as exc:
        error: Any = exc.args[0] if exc.args else exc
        why = error.str() if hasattr(error, "str") else str(error)
        raise BrokerUnreachable(f"cannot reach the Kafka broker at {bootstrap}: no metadata within "
                                f"{timeout:g} s ({why})") from None


def status(bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None, timeout: float = 10.0) -> Status:
    """The broker's view; BrokerUnreachable if it does not answer within `timeout` (each call waits as long)."""
    from confluent_kafka import KafkaException

    quiet = {"log_level": 0, **(client or {})}  # librdkafka's own lines would bury the one that says it
    reachable(bootstrap, quiet, timeout)
    try:
        return _status(bootstrap, topics, quiet, timeout)
    except (KafkaException, TimeoutError) as exc:  # it went away in the middle
        raise BrokerUnreachable(f"the Kafka broker at {bootstrap} stopped answering: {exc}") from None


def _status(bootstrap: str, topics: Topics, client: Mapping[str, Any] | None, timeout: float) -> Status:
    latest = ConfigStore(bootstrap, topics, client, timeout=timeout).latest()
    config = latest.config() if latest is not None else None
    anyone = f"status-{uuid.uuid4().hex[:8]}"
    integrations = []
    for integration in config.integrations if config is not None else []:
        group = f"{topics.prefix}-forward-{integration.name}"
        integrations.append(IntegrationStatus(
            integration.name, integration.kind, integration.enabled,
            backlog(bootstrap, topics.integration(integration.name), group, client, timeout),
            backlog(bootstrap, topics.retry(integration.name), group, client, timeout),
            backlog(bootstrap, topics.dead_letters(integration.name), anyone, client, timeout).records))
    return Status(latest.number if latest else None,
                  latest.summary() if latest else f"no revision in {topics.config} (`eventrouter config apply`)",
                  backlog(bootstrap, topics.raw, f"{topics.prefix}-router", client, timeout),
                  backlog(bootstrap, topics.invalid, anyone, client, timeout).records, integrations, topics.invalid)
