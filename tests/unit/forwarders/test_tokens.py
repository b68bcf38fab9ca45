"""Access tokens for vendors that want one (forwarders/tokens.py), through the delivery policy without a
network: fetched once and reused, replaced before they expire, replaced once after a 401, a refused grant
dead-letters, a token endpoint that is down retries, and a token never shows in what is kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from forwarders.delivery import Answer, BatchDelivery
from forwarders.ratelimit import TokenBucket
from forwarders.vendors.base import Built, Item, Request, Settings, Token, Vendor, chunks, dumps, payload_size
from schemas.delivery import Delivery
from schemas.errors import FinalError, RetryableError
from tests.unit.forwarders.test_delivery import Clock

TOKEN_URL = "https://auth.example.com/token"


class OAuthSettings(Settings):
    refresh_token: str


class OAuthVendor(Vendor):
    kind = "oauth_test"
    settings_type: ClassVar[type[Settings]] = OAuthSettings
    default_endpoint = "https://api.example.com/events"

    def build(self, items: Sequence[Item]) -> Built:
        runs = chunks(items, range(len(items)), 100, 1_000_000, payload_size)
        return Built([Request(self.endpoint, dumps([items[p].payload for p in run]), tuple(run)) for run in runs])

    def token_request(self) -> Request | None:
        assert isinstance(self.settings, OAuthSettings)
        return Request(TOKEN_URL, f"refresh_token={self.settings.refresh_token}".encode(), ())

    def read_token(self, status: int, headers: Mapping[str, str], body: bytes) -> Token:
        if status == 400:
            raise FinalError("vendor.auth", "invalid_grant")
        if status != 200:
            raise RetryableError(f"token endpoint answered {status}")
        value = orjson.loads(body)
        return Token(value["access_token"], float(value["expires_in"]))

    def signed(self, request: Request, token: str) -> Request:
        return Request(request.url, request.body, request.items,
                       {**request.headers, "Authorization": f"Bearer {token}"})


class Provider:
    """The token endpoint and the API: tokens ya29.token-1, -2... valid for `lifetime` seconds, or refused."""

    def __init__(self, clock: Clock, lifetime: float = 3600.0) -> None:
        self.clock, self.lifetime = clock, lifetime
        self.issued: dict[str, float] = {}  # token -> expires at
        self.api: list[str] = []  # the token each API request carried
        self.token_status = 200
        self.revoke_all = False

    def __call__(self, request: Request) -> Answer:
        if request.url == TOKEN_URL:
            if self.token_status != 200:
                return Answer(self.token_status, {}, b'{"error": "invalid_grant"}')
            token = f"ya29.token-{len(self.issued) + 1}"
            self.issued[token] = self.clock.now + self.lifetime
            return Answer(200, {}, orjson.dumps({"access_token": token, "expires_in": self.lifetime}))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.api.append(token)
        if self.revoke_all or self.issued.get(token, 0) <= self.clock.now:
            return Answer(401, {}, b'{"error": {"code": 401, "status": "UNAUTHENTICATED"}}')
        return Answer(200, {}, b"{}")


def make(provider: Provider, clock: Clock, **policy: Any) -> BatchDelivery:
    vendor = OAuthVendor({"refresh_token": "refresh-secret-1"})
    return BatchDelivery(vendor, Delivery.model_validate({"min_backoff_s": 1, **policy}), provider,
                         TokenBucket(None, clock=clock.time, sleep=clock.sleep), clock=clock.time, sleep=clock.sleep)


def events(n: int, start: int = 0) -> list[Item]:
    return [Item(f"m{i}", {"n": i}) for i in range(start, start + n)]


def states(report: Any) -> set[str]:
    return {f.state for f in report.fates.values()}


def test_one_token_serves_every_request_until_shortly_before_it_expires() -> None:
    clock = Clock()
    provider = Provider(clock)
    delivery = make(provider, clock)
    for batch in range(5):
        assert states(delivery.deliver(events(10, batch * 10))) == {"delivered"}
    assert provider.api == ["ya29.token-1"] * 5
    clock.now += 3600 - 30  # within the last minute of its life: replaced before it is refused
    assert states(delivery.deliver(events(3))) == {"delivered"}
    assert provider.api[-1] == "ya29.token-2" and delivery.tokens is not None and delivery.tokens.fetched == 2


def test_a_401_gets_one_new_token_and_the_events_go_again_without_counting_an_attempt() -> None:
    clock = Clock()
    provider = Provider(clock)
    delivery = make(provider, clock)
    delivery.deliver(events(1))
    provider.issued["ya29.token-1"] = clock.now  # revoked early: the vendor refuses it before we thought it expired
    report = delivery.deliver(events(5))
    assert states(report) == {"delivered"} and provider.api[-2:] == ["ya29.token-1", "ya29.token-2"]
    assert all(f.attempts == 1 for f in report.fates.values()) and clock.slept == []


def test_a_new_token_refused_too_leaves_the_401_standing_without_a_loop() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.revoke_all = True  # e.g. a developer token the vendor refuses: every access token gets 401
    report = make(provider, clock).deliver(events(4))
    assert {(f.state, f.reason) for f in report.fates.values()} == {("dead", "vendor.auth")}
    assert provider.api == ["ya29.token-1", "ya29.token-2"]


def test_a_refused_grant_dead_letters_and_a_token_endpoint_that_is_down_retries() -> None:
    clock = Clock()
    provider = Provider(clock)
    provider.token_status = 400
    report = make(provider, clock).deliver(events(2))
    assert {(f.state, f.reason) for f in report.fates.values()} == {("dead", "vendor.auth")} and provider.api == []
    provider.token_status = 503
    failing = make(provider, clock, max_attempts=3, max_retry_window_s=0)
    answers = iter([503, 503, 200])

    def recovering(request: Request) -> Answer:
        if request.url == TOKEN_URL:
            provider.token_status = next(answers)
        return provider(request)

    failing.transport = recovering
    assert failing.tokens is not None
    failing.tokens.transport = recovering
    report = failing.deliver(events(2))
    assert states(report) == {"delivered"} and provider.api == ["ya29.token-1"] and len(clock.slept) >= 2


def test_the_token_is_never_kept_in_what_a_receipt_or_dead_letter_shows() -> None:
    clock = Clock()

    class Echo(Provider):
        def __call__(self, request: Request) -> Answer:
            answer = super().__call__(request)
            if request.url == TOKEN_URL:
                return answer
            return Answer(400, {}, f"bad request with {request.headers['Authorization']}".encode())

    report = make(Echo(clock), clock).deliver(events(1))
    fate = report.fates[0]
    assert fate.state == "dead" and fate.body is not None and "ya29.token-1" not in fate.body
