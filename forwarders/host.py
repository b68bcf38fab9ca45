"""Many integrations in one forwarder process (`eventrouter forward A B C`).

Each integration keeps what isolates it: a `Forwarder` of its own (its consumer group, producer, rate
limit, retries, pause, dead letters, HTTP connections and delivery threads) running on a thread of its
own, so a vendor that hangs or fails holds up only its own thread. What the process shares is what costs
memory and wake-ups without isolating anything: the interpreter, one metrics registry and endpoint (every
series is labelled by integration), and one heartbeat.

An integration whose forwarder cannot start (its connection refused, a secret not set) or stops on an
error is logged, counted in `eventrouter_forwarder_failing{integration}` and started again after a
back-off (1 s, doubling to 60 s), while the others deliver. What the process cannot survive (a record
that kills the interpreter) stops them all, and each integration's crash guard counts the crash against
the records it had in progress (schemas/runtime/quarantine.py): after repeated crashes an innocent record
of another integration can be quarantined beside the guilty one. A vendor module that is new or
untrusted belongs in a process of its own.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from forwarders.metrics import Families, ForwarderMetrics
from forwarders.runner import Forwarder
from schemas import Topics
from schemas.config import Integration
from schemas.errors import ConfigurationError
from schemas.runtime.process import quiet_gc

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 60.0)  # the first wait before starting a failed integration again, and the longest
HEALTHY_AFTER_S = 60.0   # ran this long before failing: its back-off starts from the first wait again


class Hosted:
    """One integration in the host: builds, starts and runs its forwarder on its own thread, again after a
    back-off when it fails, until the host stops."""

    def __init__(self, integration: Integration, make: Callable[[Integration], Forwarder],
                 stopping: threading.Event, failing: Any, partitions: int) -> None:
        self.integration, self.make, self.stopping = integration, make, stopping
        self.failing, self.partitions = failing.labels(integration.name), partitions
        self.name = integration.name
        self.forwarder: Forwarder | None = None
        self.failures = 0
        self.thread = threading.Thread(target=self._run, name=f"forward-{self.name}", daemon=True)

    def stop(self) -> None:
        forwarder = self.forwarder
        if forwarder is not None:
            forwarder.stop()

    def _run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                forwarder = self.forwarder = self.make(self.integration)
                forwarder.start(self.partitions)
                self.failing.set(0)
                forwarder.run(until=self.stopping.is_set)
                return
            except ConfigurationError as exc:
                log.error("%s: cannot start: %s", self.name, exc)
                self._release()
            except Exception:  # one integration's failure never stops the others
                log.exception("%s: stopped on an error", self.name)
                self._release()
            self.failing.set(1)
            if time.monotonic() - started >= HEALTHY_AFTER_S:
                self.failures = 0  # it ran well for a while: the back-off starts again from its first wait
            self.failures += 1
            wait = min(BACKOFF_S[1], BACKOFF_S[0] * 2 ** (self.failures - 1))
            log.error("%s: starting it again in %.0f s (%s failures in a row); the other integrations go on",
                      self.name, wait, self.failures)
            self.stopping.wait(wait)

    def _release(self) -> None:
        forwarder, self.forwarder = self.forwarder, None
        if forwarder is not None:
            forwarder.release()


class Host:
    """The integrations of one process, each `Hosted`; `run` until SIGTERM or SIGINT."""

    def __init__(self, bootstrap: str, topics: Topics, integrations: Sequence[Integration], *,
                 families: Families | None = None, partitions: int = 6, data_dirs: Mapping[str, Path] | None = None,
                 client: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> None:
        self.families = families or Families()
        self.stopping = threading.Event()
        failing = Gauge("eventrouter_forwarder_failing", "1 while the integration's forwarder is not running "
                        "(cannot start, or stopped on an error)", ["integration"], registry=self.families.registry)

        def make(integration: Integration) -> Forwarder:
            state = (data_dirs or {}).get(integration.name)
            return Forwarder(bootstrap, topics, integration, client=client, environ=environ, state_dir=state,
                             metrics=ForwarderMetrics(integration.name, self.families))

        self.hosted = [Hosted(i, make, self.stopping, failing, partitions) for i in integrations]

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.hosted]

    def start(self) -> Host:
        for hosted in self.hosted:
            hosted.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for hosted in self.hosted:
            hosted.stop()

    def join(self, timeout: float | None = None) -> None:
        for hosted in self.hosted:
            hosted.thread.join(timeout)

    def run(self) -> int:
        signalled: list[int] = []

        def stop(signum: int, _frame: Any) -> None:  # only a note: the loop below stops them (no lock taken here)
            signalled.append(signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.start()
        quiet_gc()
        while not signalled:
            time.sleep(0.2)
        log.info("%s: finishing the batches under way of %s", signal.Signals(signalled[0]).name,
                 ", ".join(self.names))
        self.stop()
        self.join()
        log.info("stopped: %s", ", ".join(self.names))
        return 0
