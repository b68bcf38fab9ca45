"""A token bucket per integration, adaptive on 429: the rate halves when the vendor throttles and
recovers by a twentieth per second of success, up to the configured rate. Without a configured rate
the bucket is open until the first 429, then starts from half the rate we were sending at."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float | None, *, burst: float | None = None, floor: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.ceiling = rate_per_s          # the configured rate (None: no limit until throttled)
        self.rate = rate_per_s             # the rate in force now
        self.floor = floor
        self._burst = burst
        self._clock, self._sleep = clock, sleep
        self._tokens = self._capacity()
        self._at = clock()
        self._lock = threading.Lock()
        self._sent: list[float] = []      # recent send times, to learn the rate when first throttled
        self._recovered_at = self._at

    def _capacity(self) -> float:
        if self.rate is None:
            return 0.0
        return self._burst if self._burst is not None else max(1.0, self.rate)

    def acquire(self) -> float:
        """Take a token, waiting for one; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                if self.rate is None:
                    self._sent = [t for t in self._sent if now - t < 1.0] + [now]
                    return waited
                self._tokens = min(self._capacity(), self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1.0 - 1e-6:  # float dust must not turn into a busy wait
                    self._tokens -= 1.0
                    return waited
                pause = (1.0 - self._tokens) / self.rate
            self._sleep(pause)
            waited += pause

    def throttled(self) -> None:
        """The vendor answered 429: halve the rate (never below the floor)."""
        with self._lock:
            now = self._clock()
            current = self.rate if self.rate is not None else max(len([t for t in self._sent if now - t < 1.0]), 2)
            self.rate = max(self.floor, current / 2)
            self._tokens = min(self._tokens, 0.0)
            self._at = now
            self._recovered_at = now

    def succeeded(self) -> None:
        """A request went through: recover towards the configured rate, a twentieth per second."""
        with self._lock:
            if self.rate is None:
                return
            now = self._clock()
            seconds = now - self._recovered_at
            if seconds < 1.0:
                return
            self._recovered_at = now
            grown = self.rate * (1.0 + 0.05 * seconds)
            if self.ceiling is None and grown > 10_000:
                self.rate = None  # recovered fully: open again
            else:
                self.rate = min(grown, self.ceiling) if self.ceiling is not None else grown
