"""Wiring for `eventrouter forward INTEGRATION`: find the integration (in a config file, or in the
newest revision on the config topic), build its forwarder, serve metrics, run until SIGTERM."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any

from forwarders.metrics import ForwarderMetrics
from forwarders.runner import Forwarder
from schemas import Topics
from schemas.config import Config, Integration, load_config
from schemas.errors import ConfigurationError
from schemas.runtime.heartbeat import Heartbeat
from schemas.runtime.kafka import wait_for_brokers
from schemas.runtime.process import quiet_gc
from schemas.runtime.revisions import ConfigStore

log = logging.getLogger(__name__)


def find_integration(config: Config, name: str) -> Integration:
    for integration in config.integrations:
        if integration.name == name:
            return integration
    known = ", ".join(i.name for i in config.integrations) or "none"
    raise ConfigurationError(f"no integration named {name!r} in the config (integrations: {known})")


def config_from_topic(bootstrap: str, topics: Topics, wait_s: float = 60.0) -> Config:
    store = ConfigStore(bootstrap, topics)
    deadline = time.monotonic() + wait_s
    while True:
        revision = store.latest()
        if revision is not None:
            log.info("config revision %s from %s", revision.number, topics.config)
            return revision.config()
        if time.monotonic() > deadline:
            raise ConfigurationError(f"no config revision in {topics.config}: run `eventrouter config apply` first")
        time.sleep(1.0)


def forward(bootstrap: str, topics: Topics, name: str, *, config_file: Path | None, metrics_port: int | None,
            metrics_host: str = "127.0.0.1", partitions: int = 6, data_dir: Path | None = None) -> int:
    waiting = f"the forwarder of {name} waits for it"
    if config_file is None:
        wait_for_brokers(bootstrap, meanwhile=waiting)
    config = load_config(config_file) if config_file is not None else config_from_topic(bootstrap, topics)
    integration = find_integration(config, name)
    metrics = ForwarderMetrics(name)
    forwarder = Forwarder(bootstrap, topics, integration, metrics=metrics, state_dir=data_dir)
    wait_for_brokers(bootstrap, meanwhile=waiting)  # after the config is known good: a bad one is refused at once
    if metrics_port is not None:
        port = metrics.serve(metrics_port, metrics_host)
        log.info("%s: metrics on http://%s:%s/metrics", name, metrics_host, port)
    heartbeat = Heartbeat(bootstrap, topics, "forwarder", name, metrics.registry, client=forwarder.client).start()
    try:
        return run_forwarder(forwarder, partitions)
    finally:
        heartbeat.stop()  # its last one says the forwarder stopped


def run_forwarder(forwarder: Forwarder, partitions: int = 6) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    def stop(signum: int, _frame: Any) -> None:
        log.info("%s: %s: finishing the batches under way", forwarder.name, signal.Signals(signum).name)
        forwarder.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    forwarder.start(partitions)
    quiet_gc()  # an Item and its payload per event, freed by reference counting: young passes find nothing
    try:
        forwarder.run()
    except Exception:
        if forwarder.guard is not None:  # an error of ours or Kafka's, not a record that killed the process
            forwarder.guard.close()
        raise
    log.info("%s: stopped", forwarder.name)
    return 0
