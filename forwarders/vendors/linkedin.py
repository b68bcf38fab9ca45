"""LinkedIn Conversions API: `POST /rest/conversionEvents` (BATCH_CREATE), `{elements: [...]}`, Bearer token.

The starter kit makes one element per event: `{conversionHappenedAt (ms), conversionValue {currencyCode,
amount}, eventId (= messageId), user {userIds [{idType, idValue}], userInfo}}`; this module adds `conversion`,
the rule's URN, picked per event name by the connection (`conversion_rules`, else `conversion_rule`) unless
the playbook set one. One bad element gets the whole batch a 422 naming its index: it is dead-lettered and
the others sent again at once.

What LinkedIn documents (https://learn.microsoft.com/en-us/linkedin/..., pages read in part), and this follows:
- marketing/integrations/ads-reporting/conversions-api: a token with `rw_conversions`; `LinkedIn-Version:
  YYYYMM` and `X-Restli-Protocol-Version: 2.0.0` on every request; rules made with `conversionMethod:
  CONVERSIONS_API`. Its "Stream multiple conversion events" (LinkedIn's Postman collection): `X-RestLi-Method:
  BATCH_CREATE`, `conversion` `urn:lla:llaPartnerConversion:<id>`, `conversionHappenedAt` epoch ms,
  `conversionValue.amount` a decimal string, userIds SHA256_EMAIL and LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID,
  `userInfo` {firstName, lastName, title, companyName, countryCode} (no `companyTitle`); the answer
  `{"elements": [{"status": 201}, ...]}`. The pages' notices: a version is sunset a year after release (426).
- marketing/conversions/deduplication: only an Insight Tag event and an API event of the account with the
  same eventId are deduplicated (the API's copy is dropped); a resend through the API is not said to be, so
  `dedup_key` is None (a replay may count twice). eventId is still the messageId, for the Insight Tag.
- marketing/conversions/enabling-first-party-cookies: the `li_fat_id` click id, sent as it is as
  LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID. SHA256_EMAIL: SHA-256 hex of the trimmed, lowercased address.
- shared/api-guide/concepts/rate-limits: daily limits per application and per member, reset at midnight UTC,
  unpublished (the Developer Portal's Analytics tab); 429 past them, no Retry-After documented.
  shared/api-guide/concepts/error-handling: errors are `{status, serviceErrorCode, message}`.
From LinkedIn's partners, as the pages above did not show it: 5,000 events a batch and no event older than
90 days (Salesforce's and RudderStack's connectors); the 422 `Index: <i>, ERROR :: /<path> :: <problem>` for
the whole batch (RudderStack's handler); a userInfo needs firstName and lastName (that 422; Tealium's guide).
Id types past the two above (ACXIOM_ID, ORACLE_MOAT_ID, and the IP and GOOGLE_AID ones partners send) are not
checked here. The 2 MB per request is ours: LinkedIn states no byte limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import orjson
from pydantic import Field, field_validator

from forwarders.vendors.base import (
    RETRYABLE_STATUS,
    Built,
    Item,
    Reply,
    Request,
    Settings,
    Vendor,
    chunks,
    dumps,
    payload_size,
    read_status,
    sha256_hex,
)

URN: Final = "urn:lla:llaPartnerConversion:"
MAX_AGE_S: Final = 90 * 86_400
HASHED_IDS: Final = frozenset({"SHA256_EMAIL", "SHA256_IP_ADDRESS"})
_RULE: Final = re.compile(r"^(urn:lla:llaPartnerConversion:)?\d{1,25}$")
_DECIMAL: Final = re.compile(r"^-?\d+(\.\d+)?$")
_INDEX: Final = re.compile(r"Index: (\d+), ")
_INDICES: Final = re.compile(r"indices \[([\d,\s]+)\]")
_ADDED: Final = 160  # what `conversion` and `eventId` may add to a payload's JSON


class LinkedInSettings(Settings):
    access_token: str
    """An OAuth 2.0 access token with the `rw_conversions` scope, sent as Bearer (a `${ENV_VAR}`
    reference). LinkedIn's member tokens last 60 days: renew it before then."""
    conversion_rule: str | None = None
    """The conversion rule (its id, or `urn:lla:llaPartnerConversion:<id>`) of events the playbook names
    none for and `conversion_rules` does not list. Without it such events are refused."""
    conversion_rules: dict[str, str] = Field(default_factory=dict)
    """Conversion rule per event name, as the playbook names events (the starter kit's: PURCHASE,
    ADD_TO_CART, START_CHECKOUT, ADD_BILLING_INFO, VIEW_CONTENT, SEARCH, SIGN_UP, START_TRIAL, LEAD)."""
    api_version: str = "202610"
    """Sent as `LinkedIn-Version` (YYYYMM); LinkedIn sunsets a version a year after its release."""

    @field_validator("conversion_rule")
    @classmethod
    def _rule(cls, value: str | None) -> str | None:
        if value is not None and not _RULE.match(value):
            raise ValueError("a conversion rule is its id (digits) or urn:lla:llaPartnerConversion:<id>")
        return value

    @field_validator("conversion_rules")
    @classmethod
    def _rules(cls, value: dict[str, str]) -> dict[str, str]:
        for name, rule in value.items():
            if not _RULE.match(rule):
                raise ValueError(f"{name}: a conversion rule is its id (digits) or urn:lla:llaPartnerConversion:<id>")
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"20\d{2}(0[1-9]|1[0-2])", value):
            raise ValueError("LinkedIn-Version is YYYYMM, e.g. 202610")
        return value


class LinkedIn(Vendor):
    kind = "linkedin"
    settings_type: ClassVar[type[Settings]] = LinkedInSettings
    max_events = 5000
    max_bytes = 2_000_000  # ours: LinkedIn states no byte limit
    default_endpoint = "https://api.linkedin.com/rest/conversionEvents"
    max_age_s = float(MAX_AGE_S)
    dedup_key = None  # eventId deduplicates against the Insight Tag only
    rate_limit = "daily per app and per member, unpublished (Developer Portal); 429 without Retry-After"
    hashed = ("SHA256_EMAIL",)
    match_ids: ClassVar[Mapping[str, str]] = {"li_fat_id": "context.li_fat_id"}
    split_on_reject = True  # one bad element refuses the whole batch

    def build(self, items: Sequence[Item]) -> Built:
        settings = self.settings
        assert isinstance(settings, LinkedInSettings)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings.access_token}",
                   "LinkedIn-Version": settings.api_version, "X-Restli-Protocol-Version": "2.0.0",
                   "X-RestLi-Method": "BATCH_CREATE"}
        refused: dict[int, str] = {}
        elements: dict[int, dict[str, Any]] = {}
        for position, item in enumerate(items):
            rule = item.payload.get("conversion") or settings.conversion_rules.get(item.event_name or "") \
                or settings.conversion_rule
            if not rule:
                refused[position] = f"vendor.invalid: conversion is required (no rule for {item.event_name!r})"
                continue
            element = _element(item, str(rule))
            problem = check(element)
            if problem:
                refused[position] = problem
            else:
                elements[position] = element
        requests = []
        for run in chunks(items, list(elements), self.max_events, self.max_bytes - 100, _size):
            body = dumps({"elements": [elements[p] for p in run]})
            requests.append(Request(self.endpoint, body, tuple(run), headers))
        return Built(requests, refused)

    def read(self, request: Request, status: int, headers: Mapping[str, str], body: bytes) -> Reply:
        count = len(request.items)
        if 200 <= status < 300:
            return _read_elements(count, body)
        if status in (400, 422):
            refused = _refused(body, count)
            if refused:  # the batch was refused for these: nothing of it was kept
                return Reply(retry=[p for p in range(count) if p not in refused], rejected=refused, resend=True)
        if status == 426:  # the LinkedIn-Version is sunset (or not yet live): no event can go until it changes
            return Reply(rejected=dict.fromkeys(range(count), "vendor.rejected: LinkedIn-Version is not active"))
        return read_status(request, status, headers, body, split_on_reject=True)


def _element(item: Item, rule: str) -> dict[str, Any]:
    """The payload as LinkedIn takes it: the rule's URN, eventId (the messageId unless the playbook set one),
    and `user.userIds` without the holes the kit leaves for ids an event lacks."""
    element = {**item.payload, "conversion": rule if rule.startswith("urn:") else URN + rule}
    element.setdefault("eventId", item.message_id)
    user = element.get("user")
    if isinstance(user, dict) and isinstance(user.get("userIds"), list):
        ids = [i for i in user["userIds"] if i is not None]
        element["user"] = {**user, "userIds": ids} if ids else {k: v for k, v in user.items() if k != "userIds"}
    return element


def check(element: dict[str, Any]) -> str | None:
    """Why LinkedIn would refuse this element (and with it the whole batch), or None. Its age is the
    runner's to judge (`max_age_s`)."""
    if not _RULE.match(str(element.get("conversion"))):
        return "vendor.invalid: conversion must be urn:lla:llaPartnerConversion:<id>"
    at = element.get("conversionHappenedAt")
    if at is None:
        return "vendor.invalid: conversionHappenedAt is required"
    if not isinstance(at, int) or isinstance(at, bool) or at < 10**11:
        return "vendor.invalid: conversionHappenedAt must be epoch milliseconds"
    value = element.get("conversionValue")
    if value is not None:
        if not isinstance(value, dict):
            return "vendor.invalid: conversionValue must be an object"
        for key in ("currencyCode", "amount"):
            if value.get(key) in (None, ""):
                return f"vendor.invalid: conversionValue.{key} is required"
        if not isinstance(value["amount"], str) or not _DECIMAL.match(value["amount"]):
            return "vendor.invalid: conversionValue.amount must be a decimal string"
    user = element.get("user")
    if not isinstance(user, dict):
        return "vendor.invalid: user is required"
    ids, info = user.get("userIds") or [], user.get("userInfo")
    if not isinstance(ids, list):
        return "vendor.invalid: user.userIds must be a list"
    for index, entry in enumerate(ids):
        for key in ("idType", "idValue"):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), str) or not entry[key]:
                return f"vendor.invalid: user.userIds[{index}].{key} is required"
        if entry["idType"] in HASHED_IDS and not sha256_hex(entry["idValue"]):
            return f"vendor.invalid: {entry['idType']} must be SHA-256 hex"
    if info is not None:
        if not isinstance(info, dict):
            return "vendor.invalid: user.userInfo must be an object"
        for key in ("firstName", "lastName"):
            if not isinstance(info.get(key), str) or not info[key].strip():
                return f"vendor.invalid: user.userInfo.{key} is required"
    if not ids and info is None:
        return "vendor.invalid: user.userIds or user.userInfo is required"
    return None


def _size(item: Item) -> int:
    return payload_size(item) + _ADDED


def _read_elements(count: int, body: bytes) -> Reply:
    """A batch's 2xx: each element's own status, in order (none listed: all were created)."""
    try:
        statuses = [e.get("status") if isinstance(e, dict) else None for e in orjson.loads(body)["elements"]]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        statuses = []
    reply = Reply()
    for position in range(count):
        status = statuses[position] if position < len(statuses) else None
        if not isinstance(status, int) or 200 <= status < 300:
            reply.delivered.append(position)
        elif status in RETRYABLE_STATUS or status >= 500:
            reply.retry.append(position)
        else:
            reply.rejected[position] = f"vendor.invalid: element status {status}"
    return reply


def _refused(body: bytes, count: int) -> dict[int, str]:
    """The elements a 400 or 422 names (`Index: 2, ERROR :: /user/userInfo/lastName :: field is required...`,
    `... indices [0, 3] (0-indexed)`), with the reason; empty when it names none."""
    try:
        message = str(orjson.loads(body).get("message") or "")
    except (orjson.JSONDecodeError, AttributeError):
        return {}
    refused: dict[int, str] = {}
    parts = _INDEX.split(message)  # [before, index, its errors, index, its errors, ...]
    for index, errors in zip(parts[1::2], parts[2::2], strict=True):
        first = errors.split("\n")[0].removeprefix("ERROR :: ").strip()
        if int(index) < count:
            refused[int(index)] = f"vendor.invalid: {first[:150]}"
    listed = _INDICES.search(message)
    if listed:
        reason = f"vendor.invalid: {message[:listed.start()].strip().rstrip(',')[:150]}"
        for index in re.findall(r"\d+", listed.group(1)):
            if int(index) < count:
                refused.setdefault(int(index), reason)
    return refused
