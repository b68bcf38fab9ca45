"""An integration's delivery detail from its receipts: requests newest first, error classes counted with
their first and last time seen and the vendor's newest answer, masked for a viewer."""

from __future__ import annotations

from eventrouter.console.delivery import REQUESTS_SHOWN, detail, masked_detail


def _receipt(at: int, *outcomes: tuple[str, int | None, str | None, int, str | None],
             samples: int = 1) -> dict[str, object]:
    return {"integration": "amp", "at": at,
            "samples": [{"at": at, "events": 5, "status": 200, "tookMs": 12, "answer": "ok"}] * samples,
            "outcomes": [{"state": s, "status": st, "reason": r, "count": n, "answer": a, "messageIds": []}
                         for s, st, r, n, a in outcomes]}


def test_the_detail_counts_outcomes_and_classes_errors_with_first_and_last_seen() -> None:
    shown = detail("amp", [
        _receipt(3000, ("dead", 401, "vendor.auth", 4, "bad key for ana@example.com")),
        _receipt(1000, ("delivered", 200, None, 10, None), ("later", 503, "vendor.status_503: busy", 2, None)),
        _receipt(2000, ("dead", 401, "vendor.auth", 1, "older answer")),
    ])
    assert (shown.receipts, shown.delivered, shown.dead, shown.retried, shown.since_ms) == (3, 10, 5, 2, 1000)
    auth, busy = shown.errors
    assert (auth.reason, auth.events, auth.first_ms, auth.last_ms) == ("vendor.auth", 5, 2000, 3000)
    assert auth.answer == "bad key for ana@example.com"
    assert (busy.state, busy.reason, busy.status) == ("later", "vendor.status_503", 503)
    assert [r.at_ms for r in shown.requests] == [3000, 2000, 1000]
    assert "ana@example.com" not in masked_detail(shown).errors[0].answer


def test_the_detail_shows_the_newest_requests_only() -> None:
    shown = detail("amp", [_receipt(n, samples=3) for n in range(100)])
    assert len(shown.requests) == REQUESTS_SHOWN and shown.requests[0].at_ms == 99
