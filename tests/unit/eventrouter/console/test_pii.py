"""Personal data masked for a viewer: by key anywhere in the event, and emails and IP addresses by value."""

from __future__ import annotations

from eventrouter.console.pii import MASKED, masked_event


def test_personal_values_are_masked_by_key_and_by_look_and_the_rest_is_kept() -> None:
    event = {"type": "page", "name": "Pricing", "userId": "ana@example.com", "anonymousId": "anon-7",
             "traits": {"email": "ana@example.com", "first_name": "Ana", "lastName": "Lima", "plan": "pro",
                        "address": {"street": "Rua 1", "city": "Porto"}, "phones": ["+351 900"]},
             "context": {"ip": "203.0.113.7", "userAgent": "Mozilla/5.0", "page": {"url": "https://x.example/"}},
             "properties": {"revenue": 9.5, "contact": "2001:db8::1", "ok": True, "none": None}}
    shown = masked_event(event)
    assert shown["name"] == "Pricing" and shown["userId"] == MASKED and shown["anonymousId"] == "anon-7"
    assert shown["traits"] == {"email": MASKED, "first_name": MASKED, "lastName": MASKED, "plan": "pro",
                               "address": {"street": MASKED, "city": MASKED}, "phones": [MASKED]}
    assert shown["context"] == {"ip": MASKED, "userAgent": "Mozilla/5.0", "page": {"url": "https://x.example/"}}
    assert shown["properties"] == {"revenue": 9.5, "contact": MASKED, "ok": True, "none": None}
    assert event["traits"]["email"] == "ana@example.com"  # the event itself is not changed
