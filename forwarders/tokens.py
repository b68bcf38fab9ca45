"""Short-lived access tokens, for a vendor whose requests carry one (OAuth2's refresh-token grant): fetched
before the first send, kept until a minute before the vendor said they expire, and fetched again when the
vendor answers 401 to one. One keeper per integration, shared by its delivery threads.

A 401 is worth one new token: if the vendor also refuses the token fetched after a 401, before any request
went through with it, the 401 stands (dead-lettered `vendor.auth`, as for a vendor without tokens), so a
wrong developer token or a revoked grant never loops. A refused grant (`read_token` raising FinalError) is
final for the events of the request; no answer, or a retryable one, retries them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from forwarders.vendors.base import Request, Vendor
from schemas.errors import FinalError, RetryableError
from schemas.secrets import SCRUBBER

EARLY_S: Final = 60.0  # a token is replaced this long before the vendor said it expires


class Answer(Protocol):
    @property
    def status(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def body(self) -> bytes: ...


class Tokens:
    def __init__(self, vendor: Vendor, transport: Callable[[Request], Answer],
                 clock: Callable[[], float] = time.time) -> None:
        self.vendor, self.transport, self.clock = vendor, transport, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._generation = 0
        self._unproven_renewal = False  # the current token replaced one refused with 401, and is not yet used well
        self.fetched = 0

    def current(self) -> tuple[str, int]:
        """The token to send with and its generation, fetched if there is none fresh (FinalError: the grant
        is refused; RetryableError, or the transport's error: no token now)."""
        with self._lock:
            if self._token is None or self.clock() >= self._expires:
                self._fetch()
            assert self._token is not None
            return self._token, self._generation

    def answered(self, generation: int, status: int) -> bool:
        """The vendor answered `status` to a request sent with the token of `generation`. True when it was a
        401 worth resending with a new token (which the next `current()` fetches)."""
        with self._lock:
            if status != 401:
                if generation == self._generation:
                    self._unproven_renewal = False
                return False
            if generation != self._generation:
                return True  # another thread has already replaced it
            if self._unproven_renewal:
                return False  # the new token is refused too: the 401 stands
            self._token, self._unproven_renewal = None, True
            return True

    def _fetch(self) -> None:
        request = self.vendor.token_request()
        assert request is not None
        answer = self.transport(request)
        try:
            token = self.vendor.read_token(answer.status, answer.headers, answer.body)
        except (FinalError, RetryableError):
            raise
        except Exception as exc:  # noqa: BLE001 - an answer the module cannot read: try again later
            raise RetryableError(f"no access token: the answer ({answer.status}) could not be read: "
                                 f"{type(exc).__name__}") from None
        SCRUBBER.add(token.value)
        self._token = token.value
        self._expires = self.clock() + max(token.expires_in_s - EARLY_S, token.expires_in_s / 2)
        self._generation += 1
        self.fetched += 1
