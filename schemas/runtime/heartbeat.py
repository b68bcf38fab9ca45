"""A process's heartbeat: every INTERVAL_S, one JSON record on `<prefix>.heartbeats` saying who it is (role,
what it runs for, host, pid, when it started), when, and the cumulative value of each counter and gauge in
its Prometheus registry. The console's overview reads them: which processes are alive and what they last
reported, and the counters' growth per minute over the last day, with no address of any process to know.
Best effort: a heartbeat that cannot be written is dropped (the next one carries the same totals)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from schemas.runtime.kafka import ensure_topics, producer_settings
from schemas.topics import Topics

log = logging.getLogger(__name__)
INTERVAL_S: Final = 10.0
RETENTION_MS: Final = 2 * 86_400_000


def snapshot(registry: Any) -> list[list[Any]]:
    """[metric, labels, value] for every counter and gauge sample of a Prometheus registry."""
    out: list[list[Any]] = []
    for family in registry.collect():
        if family.type not in ("counter", "gauge"):
            continue
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue  # a counter's _created
            out.append([sample.name, dict(sample.labels), sample.value])
    return out


class Heartbeat:
    def __init__(self, bootstrap: str, topics: Topics, role: str, runs_for: str, registry: Any, *,
                 client: Mapping[str, Any] | None = None, interval_s: float = INTERVAL_S) -> None:
        self.bootstrap, self.topics, self.client = bootstrap, topics, dict(client or {})
        self.registry, self.interval_s = registry, interval_s
        self.who = {"role": role, "for": runs_for, "host": socket.gethostname(), "pid": os.getpid(),
                    "started": int(time.time() * 1000)}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        """A last heartbeat says the process stopped (given 3 s at most: a broker that is away does not
        hold up the process's exit)."""
        self._stop.set()
        self._thread.join(3)

    def _run(self) -> None:
        from confluent_kafka import Producer

        key = f"{self.who['role']}:{self.who['host']}:{self.who['pid']}".encode()
        producer: Any = None
        while True:
            stopping = self._stop.wait(self.interval_s if producer is not None else 0.0)
            try:
                if producer is None:
                    ensure_topics(self.bootstrap, [self.topics.heartbeats], partitions=1, client=self.client,
                                  config={"retention.ms": str(RETENTION_MS)}, timeout=10.0)
                    producer = Producer(producer_settings(self.bootstrap, {"linger.ms": 0, **self.client}))
                producer.produce(self.topics.heartbeats, orjson.dumps({
                    **self.who, "at": int(time.time() * 1000), "stopped": stopping,
                    "counters": snapshot(self.registry)}), key)
                producer.poll(0)
            except Exception as exc:  # noqa: BLE001 - best effort: the next one carries the same totals
                log.debug("heartbeat not written: %s", type(exc).__name__)
            if stopping:
                if producer is not None:
                    producer.flush(2)
                return
