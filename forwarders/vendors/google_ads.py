"""Google Ads API click conversions: `POST /v26/customers/{customer_id}:uploadClickConversions` with an
OAuth2 access token (refresh-token grant); matched on gclid, gbraid or wbraid, or hashed email and phone.

The starter kit makes one ClickConversion per event, naming what it counts as in `conversion` (purchase,
signup...); the connection's `conversion_actions` gives each name's conversion action id. `orderId` is the
messageId unless the playbook sets one. What Google documents (v26, the newest version its docs show):
- .../reference/rpc/v26/UploadClickConversionsRequest, .../v26/ClickConversion: `{conversions, partialFailure:
  true, validateOnly}`; conversionDateTime "yyyy-mm-dd hh:mm:ss+|-hh:mm"; currencyCode ISO 4217; not both
  gbraid and wbraid; userIdentifiers: hashedEmail or hashedPhoneNumber, at most 5.
- .../docs/best-practices/quotas: 2,000 conversions a request (TOO_MANY_CONVERSIONS_IN_REQUEST); operations a
  day by the Cloud project's access level (Explorer 2,880, Basic 15,000, Standard unlimited), past them
  RESOURCE_EXHAUSTED (429) with `retryDelay` in its details, no Retry-After. No byte limit for REST: 4 MB is ours.
- .../docs/best-practices/partial-failures: a 200 whose `partialFailureError.details[].errors[]` name refused
  conversions by `location.fieldPathElements[{fieldName: "conversions", index}]`; other errors fail the request.
- .../reference/rpc/v26/ConversionUploadErrorEnum.ConversionUploadError: EXPIRED_EVENT (the click is older
  than the click-through window, 90 days at most: support.google.com/google-ads/answer/3123169), TOO_RECENT_*
  ("retry after 6 hours": retried), DUPLICATE_ORDER_ID (one orderId twice in a request: copies go in later
  requests here), ORDER_ID_ALREADY_IN_USE and CLICK_CONVERSION_ALREADY_EXISTS (it has it: delivered).
- .../rest/auth: `Authorization: Bearer`, `login-customer-id` through a manager account;
  .../docs/api-policy/developer-token: developer tokens were sunset on 2026-09-09, the header is ignored.
- developers.google.com/identity/protocols/oauth2/web-server#offline: form-encoded client_id, client_secret,
  refresh_token, grant_type=refresh_token -> {access_token, expires_in}; a refused grant is a 4xx
  (`invalid_grant`), final; a 401 UNAUTHENTICATED gets one new token (forwarders/tokens.py).
- .../docs/conversions/upload-offline: SHA-256 of trimmed, lowercased email; the phone in E.164 (+digits).
(`...` is https://developers.google.com/google-ads/api.)
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Final
from urllib.parse import urlencode

import orjson
from pydantic import BeforeValidator, StringConstraints

from forwarders.ssrf import Network, UnsafeDestination, check_literal
from forwarders.vendors.base import (
    RETRYABLE_STATUS,
    Built,
    Item,
    Reply,
    Request,
    Settings,
    Token,
    Vendor,
    chunks,
    dumps,
    payload_size,
    read_status,
    retry_after,
    sha256_hex,
)
from schemas.errors import ConfigurationError, FinalError, RetryableError

MAX_CONVERSIONS: Final = 2000
MAX_BODY: Final = 4_000_000  # ours: Google documents no byte limit for REST
MAX_AGE_S: Final = 90 * 86_400  # the longest click-through window: an older conversion's click is older still
MAX_IDENTIFIERS: Final = 5
HASHED: Final = ("hashedEmail", "hashedPhoneNumber")
CLICK_IDS: Final = ("gclid", "gbraid", "wbraid")
ALREADY_RECORDED: Final = frozenset({"ORDER_ID_ALREADY_IN_USE", "CLICK_CONVERSION_ALREADY_EXISTS"})
LATER: Final = {"TOO_RECENT_EVENT": 6 * 3600.0, "TOO_RECENT_CONVERSION_ACTION": 6 * 3600.0}
_EXTRA: Final = 160  # what the module may add to a payload: conversionAction, orderId
_ACTION: Final = re.compile(r"^customers/\d+/conversionActions/\d+$")
_DATE_TIME: Final = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?[+-]\d\d:\d\d$")
_CURRENCY: Final = re.compile(r"^[A-Z]{3}$")
# an account or conversion action id: digits (a YAML number, or with the dashes Google Ads shows, welcome)
Id = Annotated[str, BeforeValidator(lambda v: str(v).replace("-", "")), StringConstraints(pattern=r"^\d+$")]


class GoogleAdsSettings(Settings):
    customer_id: Id
    """The Google Ads account the conversions are uploaded to (its conversion customer)."""
    conversion_actions: dict[str, Id]
    """The conversion action id for each `conversion` name the playbook sets (the starter kit's: purchase,
    begin_checkout, add_to_cart, signup, page_view)."""
    client_id: str
    """The OAuth2 client id, of the Google Cloud project that has Google Ads API access."""
    client_secret: str
    """The OAuth2 client secret (a `${ENV_VAR}` reference)."""
    refresh_token: str
    """An OAuth2 refresh token with the `https://www.googleapis.com/auth/adwords` scope (a `${ENV_VAR}` reference)."""
    login_customer_id: Id | None = None
    """The manager account's id, sent as `login-customer-id`, when access to the account comes through it."""
    developer_token: str | None = None
    """Sent as `developer-token` when set; Google sunset developer tokens on 2026-09-09 and ignores it."""
    api_version: Annotated[str, StringConstraints(pattern=r"^v\d+$")] = "v26"
    """The Google Ads API version in the URL."""
    oauth_endpoint: str = "https://oauth2.googleapis.com/token"
    """Where access tokens come from (the OAuth2 token URL)."""
    validate_only: bool = False
    """Sent as `validateOnly`: Google checks the conversions and records none."""


class GoogleAds(Vendor):
    kind = "google_ads"
    settings_type: ClassVar[type[Settings]] = GoogleAdsSettings
    max_events = MAX_CONVERSIONS
    max_bytes = MAX_BODY
    max_age_s = float(MAX_AGE_S)
    default_endpoint = "https://googleads.googleapis.com"
    dedup_key = "orderId (else the click with conversionDateTime)"
    rate_limit = "operations a day by access level (Explorer 2,880, Basic 15,000); 429 with a retryDelay"
    hashed = HASHED
    match_ids: ClassVar[Mapping[str, str]] = {"gclid": "context.gclid", "gbraid": "context.gbraid",
                                              "wbraid": "context.wbraid"}

    def __init__(self, connection: Mapping[str, Any], networks: tuple[Network, ...] | None = None) -> None:
        super().__init__(connection, networks)
        try:  # the token URL is a destination too
            check_literal(self._settings().oauth_endpoint, self.allowance)
        except UnsafeDestination as exc:
            raise ConfigurationError(f"{self.kind}: connection.oauth_endpoint: {exc.message}") from None

    def _settings(self) -> GoogleAdsSettings:
        assert isinstance(self.settings, GoogleAdsSettings)
        return self.settings

    def build(self, items: Sequence[Item]) -> Built:
        settings = self._settings()
        url = f"{self.endpoint.rstrip('/')}/{settings.api_version}/customers/{settings.customer_id}" \
              ":uploadClickConversions"
        headers = {"Content-Type": "application/json"}
        if settings.login_customer_id:
            headers["login-customer-id"] = settings.login_customer_id
        if settings.developer_token:
            headers["developer-token"] = settings.developer_token
        refused: dict[int, str] = {}
        conversions: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            made = self._conversion(item)
            if isinstance(made, str):
                refused[position] = made
            else:
                conversions[position] = made
        # Google refuses every copy of an orderId repeated in one request: the nth copy goes in the nth round
        seen: Counter[str] = Counter()
        rounds: dict[int, list[int]] = {}
        for position, conversion in conversions.items():
            order = str(conversion["orderId"])
            rounds.setdefault(seen[order], []).append(position)
            seen[order] += 1
        requests = []
        for positions in rounds.values():
            for run in chunks(items, positions, self.max_events, self.max_bytes - 200, _size):
                body: dict[str, Any] = {"conversions": [conversions[p] for p in run], "partialFailure": True}
                if settings.validate_only:
                    body["validateOnly"] = True
                requests.append(Request(url, dumps(body), tuple(run), headers))
        return Built(requests, refused)

    def _conversion(self, item: Item) -> dict[str, Any] | str:
        """The ClickConversion Google gets for this event, or why Google would refuse it."""
        settings = self._settings()
        conversion = {k: v for k, v in item.payload.items() if k != "conversion" and v is not None}
        if "conversionAction" not in conversion:
            name = item.payload.get("conversion")
            if name is None:
                return "vendor.invalid: conversion is required (a name in connection.conversion_actions)"
            action = settings.conversion_actions.get(str(name))
            if action is None:
                return f"vendor.invalid: no conversion action for {str(name)[:60]!r} in connection.conversion_actions"
            conversion["conversionAction"] = f"customers/{settings.customer_id}/conversionActions/{action}"
        if not conversion.get("orderId"):
            conversion["orderId"] = item.message_id
        if isinstance(ids := conversion.get("userIdentifiers"), list):  # written by position: a missing one is a gap
            if not (ids := [i for i in ids if i]):
                del conversion["userIdentifiers"]
            else:
                conversion["userIdentifiers"] = ids
        return check(conversion) or conversion

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        answer = _json(body)
        everyone = range(len(request.items))
        if 200 <= status < 300:
            failure = answer.get("partialFailureError")
            if not isinstance(failure, dict):
                return Reply(delivered=list(everyone))
            reply = Reply()
            errors = _errors_by_index(failure, len(request.items))
            # an error that names no conversion leaves the others unknown: they go again (orderId dedupes them)
            unplaced = not errors or any(_index(e, len(request.items)) is None for e in _ads_errors(failure))
            for position in everyone:
                code = errors.get(position)
                if code is None and unplaced:
                    reply.retry.append(position)
                elif code is None or code in ALREADY_RECORDED:
                    reply.delivered.append(position)
                elif code in LATER:
                    reply.retry.append(position)
                    reply.retry_after = max(reply.retry_after or 0.0, LATER[code])
                else:
                    reply.rejected[position] = f"vendor.{'too_old' if code == 'EXPIRED_EVENT' else 'invalid'}: {code}"
            return reply
        error: dict[str, Any] = answer["error"] if isinstance(answer.get("error"), dict) else {}
        if status == 400 and (errors := _errors_by_index(error, len(request.items))):
            # refused whole for these conversions: the others are sent again at once
            return Reply(retry=[p for p in everyone if p not in errors], resend=True,
                         rejected={p: f"vendor.invalid: {code}" for p, code in errors.items()})
        # a 400 naming no conversion is about the request (per-conversion errors come as partial failures):
        # bisecting cannot mend it and would spend the daily operations quota
        reply = read_status(request, status, headers, body)
        if reply.retry and reply.retry_after is None:
            reply.retry_after = _retry_delay(error)
        return reply

    def token_request(self) -> Request | None:
        settings = self._settings()
        form = urlencode({"client_id": settings.client_id, "client_secret": settings.client_secret,
                          "refresh_token": settings.refresh_token, "grant_type": "refresh_token"})
        return Request(settings.oauth_endpoint, form.encode(), (),
                       {"Content-Type": "application/x-www-form-urlencoded"})

    def read_token(self, status: int, headers: Mapping[str, str], body: bytes) -> Token:
        answer = _json(body)
        if status == 200 and isinstance(answer.get("access_token"), str) and answer["access_token"]:
            expires = answer.get("expires_in")
            lifetime = float(expires) if isinstance(expires, int | float) and expires > 0 else 3600.0
            return Token(answer["access_token"], lifetime)
        if status in RETRYABLE_STATUS or status >= 500 or status == 200:
            raise RetryableError(f"no access token: the token endpoint answered {status}", retry_after(headers),
                                 status)
        error = str(answer.get("error") or "")[:60]  # invalid_grant, invalid_client...: the grant is refused
        raise FinalError("vendor.auth", f"the refresh-token grant was refused ({status} {error})".strip(),
                         status, error)

    def signed(self, request: Request, token: str) -> Request:
        return Request(request.url, request.body, request.items,
                       {**request.headers, "Authorization": f"Bearer {token}"}, request.method)


def check(conversion: dict[str, Any]) -> str | None:
    """Why Google would refuse this ClickConversion, or None."""
    if not isinstance(conversion.get("conversionAction"), str) or not _ACTION.match(conversion["conversionAction"]):
        return "vendor.invalid: conversionAction must be customers/{id}/conversionActions/{id}"
    when = conversion.get("conversionDateTime")
    if not isinstance(when, str) or not _DATE_TIME.match(when):
        return "vendor.invalid: conversionDateTime is required, as yyyy-mm-dd hh:mm:ss+hh:mm"
    identifiers = conversion.get("userIdentifiers")
    if not any(conversion.get(k) for k in CLICK_IDS) and not identifiers:
        return "vendor.invalid: gclid, gbraid, wbraid or userIdentifiers is required"
    if conversion.get("gbraid") and conversion.get("wbraid"):
        return "vendor.invalid: gbraid and wbraid are both set"
    if identifiers is not None:
        if not isinstance(identifiers, list) or len(identifiers) > MAX_IDENTIFIERS:
            return f"vendor.invalid: userIdentifiers must be a list of at most {MAX_IDENTIFIERS}"
        for identifier in identifiers:
            kinds = [k for k in identifier if k != "userIdentifierSource"] if isinstance(identifier, dict) else []
            if len(kinds) != 1 or kinds[0] not in HASHED:
                return "vendor.invalid: a user identifier holds one hashedEmail or hashedPhoneNumber"
            if not sha256_hex(identifier[kinds[0]]):
                return f"vendor.invalid: {kinds[0]} must be SHA-256 hex"
    value = conversion.get("conversionValue")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "vendor.invalid: conversionValue must be a number"
    currency = conversion.get("currencyCode")
    if currency is not None and (not isinstance(currency, str) or not _CURRENCY.match(currency)):
        return "vendor.invalid: currencyCode must be an ISO 4217 code (USD)"
    return None


def _ads_errors(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The GoogleAdsFailure errors in a google.rpc.Status's details."""
    return [e for d in status.get("details") or [] if isinstance(d, dict) for e in d.get("errors") or []
            if isinstance(e, dict)]


def _errors_by_index(status: Mapping[str, Any], count: int) -> dict[int, str]:
    """Conversion index -> the first error code Google gives for it (`{"errorCode": {"kindError": CODE}}`)."""
    out: dict[int, str] = {}
    for error in _ads_errors(status):
        codes = error.get("errorCode")
        code = str(next(iter(codes.values()))) if isinstance(codes, dict) and codes else "UNKNOWN"
        index = _index(error, count)
        if index is not None:
            out.setdefault(index, code[:80])
    return out


def _index(error: Mapping[str, Any], count: int) -> int | None:
    """The conversion an error names (`location.fieldPathElements[conversions].index`), if it names one."""
    location = error.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, dict) else None
    where = [e.get("index") for e in elements or [] if isinstance(e, dict) and e.get("fieldName") == "conversions"]
    index = where[0] if where else None
    return index if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < count else None


def _retry_delay(status: Mapping[str, Any]) -> float | None:
    """QuotaErrorDetails.retryDelay ("30s") in a RESOURCE_EXHAUSTED answer's details."""
    delays = [((e.get("details") or {}).get("quotaErrorDetails") or {}).get("retryDelay") for e in _ads_errors(status)]
    seconds = [float(d[:-1]) for d in delays if isinstance(d, str) and re.match(r"^\d+(\.\d+)?s$", d)]
    return min(max(seconds), 86_400.0) if seconds else None


def _json(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _size(item: Item) -> int:
    return payload_size(item) + _EXTRA
