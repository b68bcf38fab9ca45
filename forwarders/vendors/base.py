"""What every vendor module declares, and the default reading of a vendor's answer.

A vendor module is a `Vendor` subclass: its `kind`, its settings (a pydantic model of the
integration's `connection`), its batch limits, `build()` (a batch of events -> HTTP requests) and,
only where the vendor says more than its status code does, `read()` (an answer -> what happened to
each event of the request). Batching, rate limits, retries, dead letters and receipts are the
runner's job (forwarders/runner.py, forwarders/delivery.py). Pure: no network here.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from forwarders.ssrf import Allowance, Network, UnsafeDestination, check_literal, operator_networks
from schemas.errors import ConfigurationError

RETRYABLE_STATUS: Final = frozenset({408, 425, 429, 500, 502, 503, 504})
# a settings field whose name holds one of these is a credential: scrubbed, and given as a `${ENV}` reference
SECRET_WORDS: Final = ("secret", "token", "key", "password")
_SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
# an integer time at or over this is milliseconds, not seconds (in seconds it is the year 5138; in ms, 1973)
MILLISECONDS: Final = 10**11


class Item(NamedTuple):
    """One Outbound record as a forwarder sees it: the playbook's payload and the ids around it. (A
    NamedTuple: one is made per event, and a frozen dataclass of 14 fields costs 4 us to build.)"""

    message_id: str
    payload: dict[str, Any]
    event_name: str | None = None
    call: str = "track"
    user_id: str | None = None
    anonymous_id: str | None = None
    timestamp_ms: int = 0
    partition: int = 0
    offset: int = 0
    raw: bytes = b""              # the record's bytes, for a dead letter
    attempts: int = 0             # attempts made before this one (from the retry topic)
    first_attempt_ms: int | None = None
    topic: str = ""
    written_ms: int = 0           # when the router wrote the record (its Kafka timestamp)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request for `items` (positions in the batch given to `build`)."""

    url: str
    body: bytes
    items: tuple[int, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    method: str = "POST"


@dataclass(slots=True)
class Reply:
    """What a vendor's answer means for each event of one request, by position in `Request.items`.

    `delivered`, `retry` and `rejected` (position -> reason) partition the positions. `retry_after`
    is the least wait the vendor asked for; `split` asks to send the retried events in smaller
    requests (413, or a vendor that rejects a whole batch for one bad event)."""


    delivered: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    retry_after: float | None = None
    split: bool = False
    resend: bool = False  # send `retry` again at once; not a failed attempt (a split, the others of a refusal)


@dataclass(frozen=True, slots=True)
class Token:
    """A short-lived access token (OAuth2) and how long the vendor said it lasts."""

    value: str
    expires_in_s: float


@dataclass(frozen=True, slots=True)
class Built:
    """`build()`'s result: the requests, and events refused before sending (position -> reason)."""

    requests: list[Request]
    refused: dict[int, str] = field(default_factory=dict)


class Settings(BaseModel):
    """A vendor's connection settings. `endpoint` overrides the vendor's URL (tests, EU regions);
    `allow_http` and `allow_private` open the destination guard (forwarders/ssrf.py): plain http, and a
    private address the operator also lists in EVENTROUTER_PRIVATE_NETWORKS."""

    # a field's docstring is its description: docs/configuration.md is made from them (eventrouter/reference.py)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    endpoint: str | None = None
    """The vendor's URL instead of its default (tests, EU regions)."""
    allow_http: bool = False
    """Allow plain http:// to this destination."""
    allow_private: bool = False
    """Allow a private address, if the operator also lists its network in EVENTROUTER_PRIVATE_NETWORKS."""


class Vendor:
    """Subclasses set `kind`, `settings_type`, `max_events`, `max_bytes` and implement `build`."""

    kind: ClassVar[str]
    settings_type: ClassVar[type[Settings]] = Settings
    max_events: ClassVar[int] = 500
    max_bytes: ClassVar[int] = 1_000_000
    default_endpoint: ClassVar[str] = ""
    endpoint_key: ClassVar[str] = "endpoint"  # the connection key that names the URL, for messages
    split_on_reject: ClassVar[bool] = False  # a 4xx for one bad event refuses the whole request
    max_age_s: ClassVar[float | None] = None  # the oldest event (seconds) the vendor accepts, if it says
    dedup_key: ClassVar[str | None] = None  # what the vendor deduplicates on, set from the messageId (None:
    # it does not, and sending an event again counts it twice: a replay is not safe)
    rate_limit: ClassVar[str] = ""  # the vendor's documented rate limit, briefly ("" when it documents none)
    hashed: ClassVar[tuple[str, ...]] = ()  # the personal data it wants SHA-256 hashed (the starter kit does)
    match_ids: ClassVar[Mapping[str, str]] = {}  # the click and browser ids it matches people on -> where an
    # event carries each (`context.ttclid`...): the starter kit reads them there

    def __init__(self, connection: Mapping[str, Any], networks: tuple[Network, ...] | None = None) -> None:
        """`networks`: the operator's private networks (None: EVENTROUTER_PRIVATE_NETWORKS)."""
        try:
            self.settings = self.settings_type(**connection)
        except ValidationError as exc:
            problems = "; ".join(f"connection.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"{self.kind}: {problems}") from None
        self.endpoint = self.endpoint_of(self.settings)
        self.allowance = Allowance(self.settings.allow_http, self.settings.allow_private,
                                   operator_networks() if networks is None else networks)
        try:
            check_literal(self.endpoint, self.allowance)  # the transport judges every request's URL again
        except UnsafeDestination as exc:
            raise ConfigurationError(f"{self.kind}: connection.{self.endpoint_key}: {exc.message}") from None

    def endpoint_of(self, settings: Settings) -> str:
        return settings.endpoint or self.default_endpoint

    def secrets(self) -> list[str]:
        """Values to scrub from anything we keep of a vendor's answer (bodies may echo a key)."""
        return [v for k, v in self.settings.model_dump().items() if isinstance(v, str) and k != "endpoint" and
                any(w in k for w in SECRET_WORDS)]

    def build(self, items: Sequence[Item]) -> Built:
        raise NotImplementedError

    def token_request(self) -> Request | None:
        """For a vendor whose requests carry a short-lived access token (OAuth2's refresh-token grant): the
        request that gets one. None (the default): the connection's credentials go in `build` itself."""
        return None

    def read_token(self, status: int, headers: Mapping[str, str], body: bytes) -> Token:
        """The token in the answer to `token_request()`. Raise FinalError (`vendor.auth`) when the grant is
        refused for good, RetryableError when it may work later."""
        raise NotImplementedError

    def signed(self, request: Request, token: str) -> Request:
        """`request` carrying the access token `token` (called just before each send, and again with a new
        token after the vendor answered 401 to an old one)."""
        return request

    def before_send(self, request: Request) -> None:
        """Raise a FinalError if `request` must not be sent. (The destination guard is the transport's.)"""

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        return read_status(request, status, headers, body, split_on_reject=self.split_on_reject)


def read_status(request: Request, status: int, headers: Mapping[str, str], body: bytes, *,
                split_on_reject: bool = False) -> Reply:
    """The default reading: 2xx delivered; 408, 425, 429 and 5xx retried (after Retry-After); 413 split;
    any other status (3xx included: we never follow redirects) final for every event."""
    positions = list(range(len(request.items)))
    if 200 <= status < 300:
        return Reply(delivered=positions)
    if status in RETRYABLE_STATUS or status >= 500:
        return Reply(retry=positions, retry_after=retry_after(headers))
    if status == 413 and len(positions) > 1:
        return Reply(retry=positions, split=True, resend=True)
    if split_on_reject and 400 <= status < 500 and status not in (401, 403, 404) and len(positions) > 1:
        return Reply(retry=positions, split=True, resend=True)  # bisect to find the event the vendor refuses
    reason = "vendor.auth" if status in (401, 403) else "vendor.redirect" if 300 <= status < 400 else \
        "vendor.rejected"
    return Reply(rejected=dict.fromkeys(positions, reason))


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the vendor asked us to wait (`Retry-After`: seconds or an HTTP date), capped at a day."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), 86_400.0)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def chunks(items: Sequence[Item], positions: Sequence[int], max_events: int, max_bytes: int,
           size: Any) -> list[list[int]]:
    """`positions` in order, cut into runs of at most `max_events` whose `size(item)` sums stay under
    `max_bytes` (one oversized event goes alone; the vendor's 413 then dead-letters it)."""
    out: list[list[int]] = []
    current: list[int] = []
    used = 0
    for position in positions:
        n = size(items[position])
        if current and (len(current) >= max_events or used + n > max_bytes):
            out.append(current)
            current, used = [], 0
        current.append(position)
        used += n
    if current:
        out.append(current)
    return out


def sha256_hex(value: Any) -> bool:
    """A SHA-256 digest in lower-case hex: the form the vendors want hashed personal data in."""
    return isinstance(value, str) and _SHA256_HEX.match(value) is not None


def phases(items: Sequence[Item], kinds: Mapping[int, str]) -> dict[int, int]:
    """For a vendor whose calls of different kinds go to different endpoints (events, profiles): each
    position's phase, the number of times its user's kind changed before it in the batch. Requests made per
    (phase, kind) and sent in phase order keep each user's calls in order (an identify before the events
    after it), while the users whose calls are all of one kind share requests."""
    out: dict[int, int] = {}
    last: dict[str, tuple[str, int]] = {}  # user -> (kind, phase) of its latest call
    for position in sorted(kinds):
        item = items[position]
        user = item.user_id or item.anonymous_id or f"#{position}"
        kind, phase = last.get(user, (kinds[position], 0))
        if kind != kinds[position]:
            phase += 1
        last[user] = (kinds[position], phase)
        out[position] = phase
    return out


def payload_size(item: Item) -> int:
    """An upper bound of the payload's JSON size: its Outbound record holds that JSON and a little more."""
    return len(item.raw) if item.raw else len(orjson.dumps(item.payload)) + 1
