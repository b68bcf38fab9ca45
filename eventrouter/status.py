"""`eventrouter status`: the config revision in force, the stream workers' lag on the raw topic, and for
each integration its forwarders' lag (topic and retry topic) and its dead letters, from the broker alone
(watermarks and the consumer groups' committed offsets; no process is asked)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas import Topics
from schemas.kafka import consumer_settings, partition_count, watermarks
from schemas.revisions import ConfigStore


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
    invalid: int
    integrations: list[IntegrationStatus]

    def lines(self) -> list[str]:
        out = [f"config: {self.revision_summary}",
               f"raw: {self.raw.records} records, worker lag {_lag(self.raw.lag)}; invalid (dead letters): "
               f"{self.invalid}",
               f"{'integration':<20} {'kind':<10} {'routed':>9} {'lag':>8} {'retrying':>9} {'dead letters':>13}"]
        for i in self.integrations:
            out.append(f"{i.name:<20} {i.kind:<10} {i.topic.records:>9} {_lag(i.topic.lag):>8} "
                       f"{_lag(i.retry.lag):>9} {i.dead_letters:>13}" + ("" if i.enabled else "  (disabled)"))
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


def status(bootstrap: str, topics: Topics, client: Mapping[str, Any] | None = None) -> Status:
    latest = ConfigStore(bootstrap, topics, client).latest()
    config = latest.config() if latest is not None else None
    anyone = f"status-{uuid.uuid4().hex[:8]}"
    integrations = []
    for integration in config.integrations if config is not None else []:
        group = f"{topics.prefix}-forward-{integration.name}"
        integrations.append(IntegrationStatus(
            integration.name, integration.kind, integration.enabled,
            backlog(bootstrap, topics.integration(integration.name), group, client),
            backlog(bootstrap, topics.retry(integration.name), group, client),
            backlog(bootstrap, topics.dead_letters(integration.name), anyone, client).records))
    return Status(latest.number if latest else None,
                  latest.summary() if latest else f"no revision in {topics.config} (`eventrouter config apply`)",
                  backlog(bootstrap, topics.raw, f"{topics.prefix}-router", client),
                  backlog(bootstrap, topics.invalid, anyone, client).records, integrations)
