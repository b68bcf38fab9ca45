"""One account of the pipeline from its processes' counters (`Stack.progress()`): the raw topic's size,
the stream workers' counts (read, rejected before routing, duplicates dropped) and per integration what
the workers routed to it and what became of it at its forwarders; with the supervisor's view beside it
(the broker unreachable since when, the children failing). `up` writes it to `up.json` in its logs
folder with every progress line, so that `eventrouter status` can show what only the processes know."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_LABEL = re.compile(r'(\w+)="([^"]*)"')
SNAPSHOT = "up.json"


@dataclass
class Lane:
    """One integration's account: what the workers routed to it and what became of it."""

    routed: float = 0.0
    filtered: float = 0.0
    failed: float = 0.0          # the playbook failed: dead-lettered by the worker (the invalid topic)
    delivered: float = 0.0
    dead: dict[str, float] = field(default_factory=dict)
    retried: float = 0.0
    lag: float = 0.0

    @property
    def settled(self) -> float:
        return self.delivered + sum(self.dead.values())


@dataclass
class Progress:
    produced: int = 0            # records in the raw topic (as last read while the broker answered)
    read: float = 0.0
    invalid: float = 0.0         # rejected before routing (decode, writeKey, validation): dead-lettered
    deduplicated: float = 0.0    # repeated messageIds dropped by the workers
    lanes: dict[str, Lane] = field(default_factory=dict)
    broker_down_since: float | None = None  # epoch seconds: the broker has not answered since then
    failing: list[str] = field(default_factory=list)  # children that exited and are retried, one line each
    stalls: float = 0.0          # times a worker's engine handed over nothing while records waited (streams/stall.py)

    def line(self, now: float | None = None) -> str:
        lanes = "  ".join(f"{name} {lane.routed:.0f}>{lane.delivered:.0f}"
                          + (f" dead {sum(lane.dead.values()):.0f}" if lane.dead else "")
                          + (f" playbook errors {lane.failed:.0f}" if lane.failed else "")
                          for name, lane in sorted(self.lanes.items()))
        text = (f"produced {self.produced}  read {self.read:.0f}  rejected before routing {self.invalid:.0f}  "
                f"duplicates {self.deduplicated:.0f}  |  routed>delivered: {lanes}")
        if self.failing:
            text += "  |  failing: " + "; ".join(self.failing)
        if self.stalls:
            text += f"  |  worker stalls {self.stalls:.0f} (see the workers' logs)"
        if self.broker_down_since is not None:
            text = f"{unreachable(self.broker_down_since, now)}  |  {text}"
        return text


def unreachable(since: float, now: float | None = None) -> str:
    """"broker unreachable since 12:03:04 (17 s)" (local time)."""
    seconds = (time.time() if now is None else now) - since
    return f"broker unreachable since {time.strftime('%H:%M:%S', time.localtime(since))} ({seconds:.0f} s)"


def _sum(metrics: Mapping[str, float], name: str) -> float:
    return sum(v for k, v in metrics.items() if k.split("{")[0] == name)


def worker_counts(metrics: Mapping[str, float], progress: Progress) -> None:
    """A worker's counters into `progress`: `invalid_total` without an integration is a record rejected
    before routing; with one, that integration's playbook failed on it (both go to the invalid topic)."""
    progress.read += _sum(metrics, "eventrouter_worker_events_in_total")
    progress.deduplicated += _sum(metrics, "eventrouter_worker_deduplicated_total")
    progress.stalls += _sum(metrics, "eventrouter_worker_stalls_total")
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


def forwarder_counts(metrics: Mapping[str, float], progress: Progress) -> None:
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


def failing_integrations(metrics: Mapping[str, float]) -> list[str]:
    """The integrations a forwarder process hosting many reports as not running (forwarders/host.py)."""
    return sorted(dict(_LABEL.findall(key)).get("integration", "?") for key, value in metrics.items()
                  if key.split("{")[0] == "eventrouter_forwarder_failing" and value >= 1)


def raw_records(bootstrap: str, topic: str, timeout: float = 3.0) -> int:
    """Records in a topic (the sum of its partitions' watermark spans); 0 if it does not exist yet.
    Raises KafkaException when the broker does not answer within about `timeout` per call."""
    from confluent_kafka import Consumer

    from schemas.runtime.kafka import consumer_settings, partition_count, watermarks

    quiet = {"log_level": 0}  # an outage is said once by `up`, not by librdkafka every few seconds
    count = partition_count(bootstrap, topic, timeout=timeout, client=quiet)
    if count is None:
        return 0
    consumer = Consumer(consumer_settings(bootstrap, "eventrouter-progress", {"enable.auto.commit": False, **quiet}))
    try:
        total = 0
        for p in range(count):
            low, high = watermarks(consumer, topic, p, timeout)
            total += high - low
        return total
    finally:
        consumer.close()


# -- the snapshot `up` leaves for `status` ---------------------------------------------------------------
def write_snapshot(folder: Path, progress: Progress, *, bootstrap: str, prefix: str) -> None:
    """`folder/up.json`: this process's pid, when, the broker and prefix, and the account (replaced
    atomically: a reader never sees half of it)."""
    document = {"pid": os.getpid(), "written": time.time(), "bootstrap": bootstrap, "prefix": prefix,
                "progress": asdict(progress)}
    path = folder / SNAPSHOT
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document))
    partial.replace(path)


@dataclass(frozen=True)
class Snapshot:
    pid: int
    written: float
    progress: Progress


def read_snapshot(folder: Path, prefix: str) -> Snapshot | None:
    """The account a running `up` (its pid alive) with topic prefix `prefix` left in `folder`; None if
    there is none."""
    try:
        document: dict[str, Any] = json.loads((folder / SNAPSHOT).read_text())
        pid = int(document["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if document.get("prefix") != prefix:
        return None
    saved = dict(document["progress"])
    lanes = {name: Lane(**lane) for name, lane in saved.pop("lanes", {}).items()}
    return Snapshot(pid, float(document["written"]), Progress(**saved, lanes=lanes))
