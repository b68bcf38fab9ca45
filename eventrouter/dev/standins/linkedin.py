"""LinkedIn Conversions API stand-in (`POST /rest/conversionEvents`): Bearer token, the LinkedIn-Version and
X-Restli-Protocol-Version headers, BATCH_CREATE of at most 5,000 elements (or one element without it), and
each element's contract. Like LinkedIn, one bad element gets the whole batch refused and nothing of it kept:
a conversion rule it does not know is a 400 naming the `indices [...] (0-indexed)`, a schema problem a 422
with one `Index: <i>, ERROR :: /<path> :: <problem>` per bad element. Otherwise 200 with a status per
element (`{"elements": [{"status": 201}, ...]}`). No dedup key: LinkedIn deduplicates eventId only against
the Insight Tag.

Bodies as LinkedIn sends them: the empty-token 401 (its error-handling page), the 401 INVALID_ACCESS_TOKEN,
the 400 for a rule not made for the API (given here for any rule it does not know) and the 422 format
(RudderStack's mocks of LinkedIn's answers), 426 NONEXISTENT_VERSION (as clients report it).
Ours, where LinkedIn's words are not known: the 404, the missing-header 400s, the batch-size 400, the 413
over 2 MB, the enum and 90-day wordings; the active versions, the last twelve months' (the pages' notices)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Collection
from typing import Any, Final

import orjson

from eventrouter.dev.standins.server import Answer, Incoming, StandIn, json_answer

PATH: Final = "/rest/conversionEvents"
MAX_ELEMENTS: Final = 5000
MAX_BODY: Final = 2_000_000
MAX_AGE_MS: Final = 90 * 86_400_000
ID_TYPES: Final = frozenset({"SHA256_EMAIL", "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "ACXIOM_ID", "ORACLE_MOAT_ID",
                             "PLAINTEXT_IP_ADDRESS", "SHA256_IP_ADDRESS", "GOOGLE_AID"})
_HEX64: Final = re.compile(r"^[0-9a-f]{64}$")
_REQUIRED: Final = "field is required but not found and has no default value"


def _error(status: int, message: str, code: str | None = None, service: int | None = None) -> Answer:
    body: dict[str, Any] = {"status": status, "message": message}
    if code:
        body["code"] = code
    if service is not None:
        body["serviceErrorCode"] = service
    return json_answer(status, body)


class LinkedInStandIn(StandIn):
    name = "linkedin"
    credential = "li-access-token"
    path = PATH

    @classmethod
    def settings(cls, secret: str) -> dict[str, Any]:
        return {"access_token": secret, "conversion_rule": "104012", "conversion_rules": {"PURCHASE": "104013"}}

    @staticmethod
    def sample(index: int, message_id: str, now_s: int) -> dict[str, Any]:
        email = hashlib.sha256(f"user{index % 7}@example.com".encode()).hexdigest()
        return {"conversionHappenedAt": now_s * 1000, "eventId": message_id,
                "conversionValue": {"currencyCode": "USD", "amount": "10"},
                "user": {"userIds": [{"idType": "SHA256_EMAIL", "idValue": email}]}}

    @staticmethod
    def carried(event: dict[str, Any]) -> str:
        return str(event["eventId"])

    @staticmethod
    def spoil(payload: dict[str, Any]) -> dict[str, Any]:
        user = {"userIds": [{"idType": "PHONE_NUMBER", "idValue": "15550109999"}]}
        return {**payload, "user": user}  # the 422 names it; the batch's others are sent again

    @staticmethod
    def freshen(payload: dict[str, Any], now_s: int) -> dict[str, Any]:
        return {**payload, "conversionHappenedAt": now_s * 1000}

    def __init__(self, access_token: str | None = None, rules: Collection[str] = ("104012", "104013")) -> None:
        super().__init__()
        self.access_token = access_token or self.credential
        self.rules = {f"urn:lla:llaPartnerConversion:{r}" for r in rules}  # rules made with CONVERSIONS_API

    def answer(self, incoming: Incoming) -> Answer:
        if incoming.path != PATH:
            return _error(404, "No virtual resource found", "RESOURCE_NOT_FOUND", 0)
        authorization = incoming.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return _error(401, "Empty oauth2_access_token", service=401)
        if authorization[7:] != self.access_token:
            return _error(401, "Invalid access token", "INVALID_ACCESS_TOKEN", 65600)
        problem = _version_problem(incoming.headers.get("linkedin-version"))
        if problem:
            return problem
        if incoming.headers.get("x-restli-protocol-version") != "2.0.0":
            return _error(400, "X-Restli-Protocol-Version: 2.0.0 is required")
        if len(incoming.body) > MAX_BODY:
            return _error(413, "Request entity too large")
        body = orjson.loads(incoming.body)
        batch = (incoming.headers.get("x-restli-method") or "").upper() == "BATCH_CREATE"
        elements = body.get("elements") if batch else [body]
        if not isinstance(elements, list) or not 0 < len(elements) <= MAX_ELEMENTS:
            return _error(400, f"elements must hold 1 to {MAX_ELEMENTS} conversion events")
        unknown = [i for i, e in enumerate(elements)
                   if not isinstance(e, dict) or e.get("conversion") not in self.rules]
        if unknown:
            return _error(400, "Incorrect conversions information provided. Conversion's method should be "
                               f"CONVERSIONS_API, indices [{', '.join(map(str, unknown))}] (0-indexed)")
        now_ms = int(time.time() * 1000)
        errors = "".join(f"Index: {i}, " + "".join(f"ERROR :: {p} :: {m}\n" for p, m in found)
                         for i, e in enumerate(elements) if (found := _problems(e, now_ms)))
        if errors:
            return _error(422, errors)
        for element in elements:
            self.accept(element, None)
        if not batch:
            return Answer(201, b"", {"x-restli-id": str(elements[0].get("eventId") or "")})
        return json_answer(200, {"elements": [{"status": 201} for _ in elements]})


def _version_problem(version: str | None) -> Answer | None:
    """LinkedIn answers a version it does not run with 426; the active ones are the last twelve months'."""
    if not version:
        return _error(400, "A version must be present. Please specify a version by adding the LinkedIn-Version "
                           "header.", "VERSION_MISSING")
    now = time.gmtime()
    if re.fullmatch(r"20\d{2}(0[1-9]|1[0-2])", version):
        age = now.tm_year * 12 + now.tm_mon - (int(version[:4]) * 12 + int(version[4:]))
        if 0 <= age < 12:
            return None
    return _error(426, f"Requested version {version} is not active", "NONEXISTENT_VERSION")


def _problems(element: dict[str, Any], now_ms: int) -> list[tuple[str, str]]:
    """(path, problem) for what LinkedIn refuses in one element."""
    found: list[tuple[str, str]] = []
    at = element.get("conversionHappenedAt")
    if at is None:
        found.append(("/conversionHappenedAt", _REQUIRED))
    elif not isinstance(at, int) or at < now_ms - MAX_AGE_MS:
        found.append(("/conversionHappenedAt", "must be epoch milliseconds within the past 90 days"))
    value = element.get("conversionValue")
    if isinstance(value, dict):
        found += [(f"/conversionValue/{k}", _REQUIRED) for k in ("currencyCode", "amount") if value.get(k) is None]
    user = element.get("user")
    if not isinstance(user, dict):
        return [*found, ("/user", _REQUIRED)]
    ids, info = user.get("userIds") or [], user.get("userInfo")
    for n, given in enumerate(ids if isinstance(ids, list) else [None]):
        entry = given if isinstance(given, dict) else {}
        if entry.get("idType") not in ID_TYPES:
            found.append((f"/user/userIds/{n}/idType", f"{entry.get('idType')!r} is not an enum symbol"))
        elif not isinstance(entry.get("idValue"), str) or not entry["idValue"]:
            found.append((f"/user/userIds/{n}/idValue", _REQUIRED))
        elif entry["idType"].startswith("SHA256_") and not _HEX64.match(entry["idValue"]):
            found.append((f"/user/userIds/{n}/idValue", "must be a SHA-256 hex digest"))
    if isinstance(info, dict):
        found += [(f"/user/userInfo/{k}", _REQUIRED) for k in ("firstName", "lastName") if not info.get(k)]
    elif not ids:
        found.append(("/user", "userIds or userInfo with firstName and lastName is required"))
    return found
