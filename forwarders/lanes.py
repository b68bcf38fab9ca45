"""Which requests of a batch may be in flight at once: one user's events go in order, so requests that
share a user are in one lane; lanes go in parallel. Pure."""

from __future__ import annotations

from collections.abc import Sequence

from forwarders.vendors.base import Item, Request


def lanes(requests: Sequence[Request], items: Sequence[Item]) -> list[list[int]]:
    """The requests (indexes, each lane in their order) in lanes that may be sent at once: requests that
    share a user (userId, else anonymousId: the Kafka key) are in one lane, so one user's events are never
    in flight together and go in order. An event with neither id constrains nothing. Lanes come in the
    order of their first request."""
    lane_of: dict[str, int] = {}   # user -> a lane it is in (follow `merged_into` to the lane now)
    merged_into: list[int] = []
    members: dict[int, list[int]] = {}

    def root(lane: int) -> int:
        while merged_into[lane] != lane:
            merged_into[lane] = lane = merged_into[merged_into[lane]]
        return lane

    for index, request in enumerate(requests):
        users = {u for u in (user_of(items[p]) for p in request.items) if u}
        joined = {root(lane_of[u]) for u in users if u in lane_of}
        if joined:
            lane = min(joined)
            for other in joined - {lane}:  # this request ties two lanes together: one lane from now on
                merged_into[other] = lane
                members[lane] += members.pop(other)
        else:
            lane = len(merged_into)
            merged_into.append(lane)
            members[lane] = []
        members[lane].append(index)
        for user in users:
            lane_of[user] = lane
    return sorted((sorted(m) for m in members.values()), key=lambda m: m[0])


def user_of(item: Item) -> str | None:
    """The user an event is ordered by: its userId, else its anonymousId (the Kafka key)."""
    return item.user_id or item.anonymous_id
