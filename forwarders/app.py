"""Wiring for `eventrouter forward INTEGRATION [INTEGRATION...]`: find the integrations (in a config file,
or in the newest revision on the config topic), build their forwarders (many in one process: host.py),
serve metrics, run until SIGTERM."""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forwarders.host import Host
from forwarders.metrics import Families, ForwarderMetrics
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


def forward(bootstrap: str, topics: Topics, names: Sequence[str], *, config_file: Path | None,
            metrics_port: int | None, metrics_host: str = "127.0.0.1", partitions: int = 6,
            data_dirs: Mapping[str, Path] | None = None) -> int:
    """Deliver the integrations `names` (one, or many in this one process: forwarders/host.py)."""
    shown = ", ".join(names)
    waiting = f"the forwarder of {shown} waits for it"
    if len(set(names)) != len(names):
        raise ConfigurationError(f"an integration named twice: {shown}")
    if config_file is None:
        wait_for_brokers(bootstrap, meanwhile=waiting)
    config = load_config(config_file) if config_file is not None else config_from_topic(bootstrap, topics)
    integrations = [find_integration(config, name) for name in names]
    dirs = dict(data_dirs or {})
    if len(integrations) > 1:
        return _host(bootstrap, topics, integrations, waiting=waiting, metrics_port=metrics_port,
                     metrics_host=metrics_host, partitions=partitions, data_dirs=dirs)
    name = names[0]
    metrics = ForwarderMetrics(name)
    forwarder = Forwarder(bootstrap, topics, integrations[0], metrics=metrics, state_dir=dirs.get(name))
    wait_for_brokers(bootstrap, meanwhile=waiting)  # after the config is known good: a bad one is refused at once
    _serve(metrics.families, metrics_port, metrics_host, name)
    heartbeat = Heartbeat(bootstrap, topics, "forwarder", name, metrics.registry, client=forwarder.client).start()
    try:
        return run_forwarder(forwarder, partitions)
    finally:
        heartbeat.stop()  # its last one says the forwarder stopped


def _host(bootstrap: str, topics: Topics, integrations: list[Integration], *, waiting: str,
          metrics_port: int | None, metrics_host: str, partitions: int, data_dirs: dict[str, Path]) -> int:
    host = Host(bootstrap, topics, integrations, partitions=partitions, data_dirs=data_dirs)
    shown = ",".join(host.names)
    wait_for_brokers(bootstrap, meanwhile=waiting)
    _serve(host.families, metrics_port, metrics_host, shown)
    heartbeat = Heartbeat(bootstrap, topics, "forwarder", shown, host.families.registry).start()
    try:
        return host.run()
    finally:
        heartbeat.stop()


def _serve(families: Families, port: int | None, host: str, name: str) -> None:
    if port is not None:
        bound = families.serve(port, host)
        log.info("%s: metrics on http://%s:%s/metrics", name, host, bound)


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
