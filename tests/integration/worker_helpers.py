"""Stream workers as real subprocesses (`eventrouter worker`), and reading what they wrote."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from schemas import EventCodec, Topics, deadletter_codec, outbound_codec
from schemas.runtime.kafka import producer_settings
from tests.integration.kafka_helpers import consume_all

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoggedProcess:
    """An `eventrouter` subprocess with its output in a log file; stopped by its PID."""

    def __init__(self, args: list[str], log_path: Path, env: Mapping[str, str] | None = None,
                 module: str = "eventrouter") -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, stdout=self._log,
                                        stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return int(self.process.returncode)


class WorkerProcess(LoggedProcess):
    """One `eventrouter worker` subprocess; stopped by its PID."""

    def __init__(self, bootstrap: str, topics: Topics, folder: Path, name: str = "w1", *,
                 config: Path | None = None, batch_size: int = 200, engine: str = "kafka",
                 extra: tuple[str, ...] = (), module: str = "eventrouter") -> None:
        self.port = free_port()
        args = ["-v", "worker", "--bootstrap-servers", bootstrap, "--topic-prefix", topics.prefix, "--metrics-port",
                str(self.port), "--data-dir", str(folder / f"{name}-data"), "--batch-size", str(batch_size),
                "--partitions", "3", "--engine", engine]
        if config is not None:
            args += ["--config", str(config)]
        super().__init__([*args, *extra], folder / f"{name}.log", module=module)

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples, `name{labels}` -> value; {} while the endpoint is not up."""
        from streams.metrics import scrape

        return scrape(self.port)

    def metric(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def wait_for_revision(self, revision: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            if self.metrics().get("eventrouter_worker_config_revision", 0) >= revision:
                return
            time.sleep(0.2)
        raise AssertionError(f"worker never took revision {revision}\n{self.log()}")



def send_events(bootstrap: str, topics: Topics, events: Iterable[Mapping[str, Any]]) -> int:
    """Publish events to the raw topic as the SDK does (Avro, keyed by user, murmur2)."""
    codec = EventCodec()
    producer = Producer(producer_settings(bootstrap))
    count = 0
    for event in events:
        user = event.get("userId") or event.get("anonymousId")
        _produce(producer, topics.raw, codec.encode(event), user.encode() if isinstance(user, str) else None)
        count += 1
    assert producer.flush(30) == 0
    return count


def send_raw(bootstrap: str, topic: str, values: Iterable[bytes | None]) -> None:
    producer = Producer(producer_settings(bootstrap))
    for value in values:
        _produce(producer, topic, value, None)
    assert producer.flush(30) == 0


def _produce(producer: Producer, topic: str, value: bytes | None, key: bytes | None) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.1)


def outbound(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, settle: float = 0.0) -> list[Any]:
    """Decoded Outbound records of an integration topic, with the record key as `_key`."""
    codec = outbound_codec()
    out = []
    for message in consume_all(bootstrap, topic, expected, timeout, settle):
        record = codec.decode(message.value())
        record["_key"] = message.key()
        out.append(record)
    return out


def dead_letters(bootstrap: str, topic: str, expected: int, timeout: float = 60.0, settle: float = 0.0) -> list[Any]:
    codec = deadletter_codec()
    return [codec.decode(m.value()) for m in consume_all(bootstrap, topic, expected, timeout, settle)]
