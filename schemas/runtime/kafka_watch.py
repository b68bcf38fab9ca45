"""What the Kafka clients of this process say about reaching their brokers: one line per change.

librdkafka reports every failed connection attempt, as an error callback (`_TRANSPORT`) and a `FAIL`
log line, about 20 a second per client while a broker is down; a process has several clients. Every
client made with the settings of schemas/runtime/kafka.py reports here instead (`client_callbacks()`), and
this logs, per broker address, one WARNING when it becomes unreachable (its address, since when, the
client's reason and what this process does meanwhile: `meanwhile`, set by the command) and one INFO
line when a client of ours is connected to it again (librdkafka's statistics, every 5 s, show the
broker `UP`). Other client errors and log lines: one line per kind a minute, with a count of the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

log = logging.getLogger(__name__)

STATS_INTERVAL_MS: Final = 5000
_ADDRESS = re.compile(r"^(?:[a-z_]+://)?(\[[^\]]+\]:\d+|[^\s/:]+:\d+)/[^\s:]+: ")
_AFTER = re.compile(r"\s*\(after \d+ms[^)]*\)\s*$")
_CONNECTION: Final = frozenset({"_TRANSPORT", "_RESOLVE"})
# librdkafka retries these itself, and they pass: a broker just (re)started loads its coordinators
_TRANSIENT: Final = frozenset({"GETPID"})


def address_of(text: str) -> str | None:
    """The broker address a librdkafka message is about (`127.0.0.1:9/bootstrap: ...` -> 127.0.0.1:9)."""
    found = _ADDRESS.match(text)
    return found.group(1) if found else None


def reason_of(text: str) -> str:
    """The message without its `host:port/id: ` prefix and `(after 0ms in state CONNECT)` suffix."""
    found = _ADDRESS.match(text)
    return _AFTER.sub("", text[found.end():] if found else text)


@dataclass
class _Down:
    since: float
    reason: str
    attempts: int = 1


@dataclass
class _Said:
    at: float
    more: int = 0


class BrokerWatch:
    """The broker states of one process, shared by all its clients. Thread-safe: librdkafka calls back
    on whichever thread polls. Pure apart from the clock and the logger, both injectable."""

    def __init__(self, logger: logging.Logger = log, clock: Callable[[], float] = time.time,
                 repeat_after_s: float = 60.0) -> None:
        self.log = logger
        self.clock = clock
        self.repeat_after_s = repeat_after_s
        self.meanwhile = "retrying"
        self._down: dict[str, _Down] = {}
        self._said: dict[str, _Said] = {}
        self._lock = threading.Lock()

    def down(self) -> dict[str, float]:
        """Address -> since when (epoch seconds) it is unreachable."""
        with self._lock:
            return {address: d.since for address, d in self._down.items()}

    def error(self, name: str, text: str) -> None:
        """A client's error callback: `name` as KafkaError.name() gives it (`_TRANSPORT`, ...)."""
        address = address_of(text)
        if name in _CONNECTION and address is not None and "Disconnected" not in text:
            self.unreachable(address, reason_of(text))
        elif name in _CONNECTION or name == "_ALL_BROKERS_DOWN":
            return  # a disconnection (the broker's idle timeout does that too) or the summary of the above
        else:
            self.once(f"error {name}", logging.WARNING, "kafka client error %s: %s", name, text)

    def unreachable(self, address: str, reason: str) -> None:
        with self._lock:
            known = self._down.get(address)
            if known is not None:
                known.attempts += 1
                return
            now = self.clock()
            self._down[address] = _Down(now, reason)
        self.log.warning("broker %s unreachable since %s (%s); %s", address, _clock_time(now), reason, self.meanwhile)

    def reachable(self, address: str) -> None:
        with self._lock:
            gone = self._down.pop(address, None)
        if gone is not None:
            self.log.info("broker %s reachable again after %.0f s (%d failed attempts meanwhile)", address,
                          self.clock() - gone.since, gone.attempts)

    def stats(self, text: str) -> None:
        """A client's statistics (JSON): any broker it is connected to (`UP`) is reachable."""
        if not self._down:  # nothing to learn: skip the parse
            return
        try:
            brokers = orjson.loads(text).get("brokers", {})
        except (orjson.JSONDecodeError, AttributeError):
            return
        for broker in brokers.values():
            if isinstance(broker, dict) and broker.get("state") == "UP":
                address = broker.get("nodename")
                if isinstance(address, str) and address in self._down:
                    self.reachable(address)

    def client_log(self, level: int, facility: str, text: str) -> None:
        """A librdkafka log line. `FAIL` lines repeat the error callback's connection failures: dropped."""
        if facility == "FAIL":
            return
        if facility in _TRANSIENT:
            level = min(level, logging.INFO)
        self.once(f"log {facility}", level, "kafka client %s: %s", facility, text)

    def once(self, kind: str, level: int, message: str, *args: Any) -> None:
        """Log `message` unless a line of this `kind` was logged within `repeat_after_s`; then count it."""
        now = self.clock()
        with self._lock:
            said = self._said.get(kind)
            if said is not None and now - said.at < self.repeat_after_s:
                said.more += 1
                return
            more = said.more if said is not None else 0
            self._said[kind] = _Said(now)
        if more:
            message += " (%d more like it in the last %.0f s)"
            args = (*args, more, self.repeat_after_s)
        self.log.log(level, message, *args)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()


class _ClientLog:
    """What confluent-kafka takes as `logger`: it calls `.log(level, "%s [%s] %s", facility, name, text)`."""

    def __init__(self, watch: BrokerWatch) -> None:
        self.watch = watch

    def log(self, level: int, _fmt: str, facility: str = "", _name: str = "", text: str = "", *_rest: Any) -> None:
        with contextlib.suppress(Exception):  # an exception here would surface in the client's poll()
            self.watch.client_log(level, facility, text)


WATCH = BrokerWatch()
os.register_at_fork(after_in_child=WATCH._after_fork)


def _error_cb(err: Any) -> None:
    with contextlib.suppress(Exception):  # see _ClientLog.log
        WATCH.error(err.name(), err.str())


def _stats_cb(text: str) -> None:
    with contextlib.suppress(Exception):  # see _ClientLog.log
        WATCH.stats(text)


def client_callbacks() -> dict[str, Any]:
    """The settings that make a confluent-kafka client report to the process's BrokerWatch."""
    return {"error_cb": _error_cb, "logger": _ClientLog(WATCH), "stats_cb": _stats_cb,
            "statistics.interval.ms": STATS_INTERVAL_MS}


def report_error(err: Any) -> None:
    """For a client with an error callback of its own (producers/publisher.py): report here too."""
    _error_cb(err)


def _clock_time(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))
