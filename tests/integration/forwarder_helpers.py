"""Forwarders on the real broker: Outbound records written as the router writes them, forwarders run
in a thread of the test (or as `eventrouter forward` subprocesses), vendor stand-ins to receive."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer

from forwarders.runner import Forwarder
from schemas import Topics, outbound_codec
from schemas.config import Integration
from schemas.runtime.kafka import ensure_topics, producer_settings
from tests.integration.worker_helpers import LoggedProcess, _produce, free_port

NOW_MS = int(time.time() * 1000)


def outbound_records(integration: str, kind: str, payloads: Iterable[Mapping[str, Any]], *,
                     prefix: str = "m", timestamp_ms: int = NOW_MS, users: int = 7) -> list[tuple[bytes, bytes, str]]:
    """(key, Outbound bytes, messageId) for each payload, as the router writes them (event i: user i % users)."""
    codec = outbound_codec()
    out = []
    for i, payload in enumerate(payloads):
        message_id = str(payload.get("_messageId") or f"{prefix}-{i}-{uuid.uuid4().hex[:6]}")
        user = f"user-{i % users}"
        body = {k: v for k, v in payload.items() if k != "_messageId"}
        value = codec.encode({
            "messageId": message_id, "integration": integration, "kind": kind, "pipeline": "web", "type": "track",
            "eventName": "Test", "userId": user, "anonymousId": None, "timestamp": timestamp_ms, "receivedAt": NOW_MS,
            "payload": orjson.dumps(body).decode(), "configRevision": 1, "replayed": False,
            "sourceTopic": "t.raw", "sourcePartition": 0, "sourceOffset": i})
        out.append((user.encode(), value, message_id))
    return out


def write_outbound(bootstrap: str, topics: Topics, integration: str, kind: str,
                   payloads: Iterable[Mapping[str, Any]], *, partitions: int = 3, timestamp_ms: int = NOW_MS,
                   prefix: str = "m", users: int = 7) -> list[str]:
    """Write the payloads to the integration's topic; returns their messageIds."""
    topic = topics.integration(integration)
    ensure_topics(bootstrap, [topic], partitions=partitions)
    producer = Producer(producer_settings(bootstrap))
    ids = []
    for key, value, message_id in outbound_records(integration, kind, payloads, timestamp_ms=timestamp_ms,
                                                   prefix=prefix, users=users):
        _produce(producer, topic, value, key)
        ids.append(message_id)
    assert producer.flush(30) == 0
    return ids


def integration(name: str, kind: str, connection: Mapping[str, Any], **delivery: Any) -> Integration:
    return Integration.model_validate({"name": name, "kind": kind, "connection": dict(connection),
                                       "delivery": {"linger_ms": 50, "min_backoff_s": 0.2, **delivery},
                                       "playbook": {}})


class ForwarderThread:
    """A Forwarder running in a thread of the test, stopped as SIGTERM would stop it."""

    def __init__(self, bootstrap: str, topics: Topics, spec: Integration, **kwargs: Any) -> None:
        self.forwarder = Forwarder(bootstrap, topics, spec, **kwargs)
        self.forwarder.start(partitions=3)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.forwarder.run()
        except BaseException as exc:  # the test reports it
            self.error = exc
            raise

    def stop(self, timeout: float = 60.0) -> None:
        self.forwarder.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "forwarder did not stop"
        assert self.error is None, self.error


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> float:
    """Seconds it took `condition` to hold; AssertionError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ForwarderProcess(LoggedProcess):
    """`eventrouter forward NAME [--config FILE]` as a subprocess, stopped by its PID (no file: the
    integration comes from the config topic)."""

    def __init__(self, bootstrap: str, topics: Topics, config: Path | None, name: str, folder: Path,
                 *, env: Mapping[str, str] | None = None, tag: str = "") -> None:
        self.port = free_port()
        super().__init__(["-v", "forward", name, "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix,
                          "--metrics-port", str(self.port), "--partitions", "3",
                          *(["--config", str(config)] if config is not None else [])],
                         folder / f"forward-{name}{tag}.log", env)
