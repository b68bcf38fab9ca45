"""Personal data masked for roles without the right to see it (viewers): an event from the pipeline, as the
console shows it. Values under keys that name a person or a way to reach one (email, phone, name, address,
ip, birthday...) are masked wherever they sit, and so is any string that looks like an email address or an
IP address under any key, or appears inside a longer text (a vendor's answer quoting the request). The event keeps its
shape, so a playbook still runs on it in the test panel. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final

MASKED: Final = "(masked)"
# keys compared lower-cased with '_' and '-' removed: firstName, first_name and first-name are one key
PERSONAL_KEYS: Final = frozenset((
    "email", "emails", "phone", "phones", "phonenumber", "mobile", "name", "firstname", "lastname", "fullname",
    "username", "address", "street", "street1", "street2", "postalcode", "zip", "zipcode", "city",
    "birthday", "dateofbirth", "dob", "ip", "ipaddress", "ssn", "gender", "avatar",
))
_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_IN_TEXT: Final = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b\d{1,3}(?:\.\d{1,3}){3}\b")  # an email, an IPv4


def masked_event(event: dict[str, Any]) -> dict[str, Any]:
    """`event` with personal data masked (a new structure; `event` is not changed). A page's or screen's
    top-level `name` names the page, not a person, and is kept."""
    return {k: _masked(v, "" if k in _PAGE_FIELDS else str(k)) for k, v in event.items()}


def masked_text(text: str) -> str:
    """A text (a vendor's answer) with the email and IP addresses in it masked."""
    return _IN_TEXT.sub(MASKED, text)


_PAGE_FIELDS: Final = frozenset(("name", "category"))


def _masked(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if value is None or isinstance(value, bool):
        return value
    if _personal_key(key):
        return MASKED
    if isinstance(value, str):
        return MASKED if _EMAIL.fullmatch(value.strip()) or _is_ip(value) else _IN_TEXT.sub(MASKED, value)
    return value


def _personal_key(key: str) -> bool:
    return key.lower().replace("_", "").replace("-", "") in PERSONAL_KEYS


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True
