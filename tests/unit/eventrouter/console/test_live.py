"""What a live view is sent: filtered, a bounded sample, outcomes only of events it was sent, personal data
masked for a viewer."""

from __future__ import annotations

from eventrouter.console.live import KEPT, PER_SECOND, Filter, View, incoming, outcomes, routed


def _event(n: int, name: str = "Order Completed", user: str = "u-1") -> dict[str, object]:
    return {"type": "track", "event": name, "userId": user, "messageId": f"m-{n}", "writeKey": "wk_secret",
            "properties": {"email": "ana@example.com"}}


def test_a_filter_reads_the_query_and_admits_by_name_type_and_user() -> None:
    where = Filter.of({"name": "  order ", "type": "bogus", "user": "u-1"})
    assert where == Filter("order", "", "u-1")
    assert where.admits("track", "Order Completed", "u-1") and not where.admits("track", "Signed Up", "u-1")
    assert not where.admits("track", "Order Completed", "u-2")
    pages = Filter.of({"type": "page"})
    assert pages.admits("page", "", "") and not pages.admits("track", "", "")
    assert len(Filter.of({"name": "x" * 5000}).name) == 200


def test_an_incoming_event_never_shows_its_write_key_and_is_masked_for_a_viewer() -> None:
    row = incoming(_event(1), 1000, {"wk_secret": "web"})
    assert row.pipeline == "web" and Filter.of({"pipeline": "web"}).admits("track", "", "", row.pipeline)
    assert incoming(_event(1), 1000, {}).pipeline.startswith("(no pipeline")
    assert (row.message_id, row.type, row.name, row.user) == ("m-1", "track", "Order Completed", "u-1")
    assert "writeKey" not in row.payload
    assert row.as_json(masked=True)["payload"]["properties"]["email"] == "(masked)"
    assert row.as_json(masked=False)["payload"]["properties"]["email"] == "ana@example.com"
    assert incoming({**_event(2), "userId": "ana@example.com"}, 0).as_json(masked=True)["user"] == "(masked)"


def test_a_view_is_a_sample_at_most_per_second_and_remembers_the_newest() -> None:
    view = View(None, Filter(), masked=False)
    sent = [view.offer(incoming(_event(n), 0), now=10.0) for n in range(PER_SECOND + 5)]
    assert sum(s is not None for s in sent) == PER_SECOND and view.not_shown == 5 and view.full(10)
    assert view.offer(incoming(_event(999), 0), now=11.0) is not None  # a new second
    for n in range(KEPT + 50):
        view.offer(incoming(_event(10_000 + n), 0), now=100.0 + n)
    assert len(view.sent) == KEPT and "m-10049" not in view.sent and f"m-{10_000 + KEPT + 49}" in view.sent


def test_outcomes_go_to_views_that_were_sent_the_event_at_their_integration() -> None:
    receipt = {"integration": "amp", "outcomes": [
        {"state": "delivered", "status": 200, "attempts": 1, "reason": None, "answer": None, "messageIds": ["m-1"]},
        {"state": "dead", "status": 401, "attempts": 1, "reason": "vendor.auth",
         "answer": '{"error": "bad key for ana@example.com"}', "messageIds": ["m-2"]}]}
    told = dict(outcomes(receipt))
    everywhere, at_mix = View(None, Filter(), masked=True), View("mix", Filter(), masked=False)
    for view in (everywhere, at_mix):
        view.offer(incoming(_event(1), 0), now=1.0)
        view.offer(incoming(_event(2), 0), now=1.0)
    dead = everywhere.outcome("m-2", told["m-2"])
    assert dead is not None and dead["reason"] == "vendor.auth" and "ana@example.com" not in dead["answer"]
    assert everywhere.outcome("m-3", told["m-1"]) is None  # never sent
    assert at_mix.outcome("m-1", told["m-1"]) is None     # another integration's


def test_a_routed_record_shows_the_payload_the_playbook_made() -> None:
    row = routed({"messageId": "m-1", "type": "track", "eventName": "Order", "userId": None, "anonymousId": "a-1",
                  "pipeline": "web"}, {"event_type": "Order"}, 5)
    assert (row.user, row.pipeline, row.payload) == ("a-1", "web", {"event_type": "Order"})
