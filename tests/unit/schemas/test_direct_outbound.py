"""Outbound records assembled from parts are byte-identical to the codec's encoding of the same record."""

from __future__ import annotations

import random

from schemas import outbound_codec
from schemas.direct_outbound import OutboundParts, integration_part


def test_parts_make_the_same_bytes_as_the_codec() -> None:
    codec = outbound_codec()
    rng = random.Random(5)
    for i in range(500):
        record = {
            "messageId": f"m-{i}-é", "integration": rng.choice(["ga4", "crm-hook"]), "kind": "webhook",
            "pipeline": "web", "type": rng.choice(["track", "identify", "alias"]),
            "eventName": rng.choice([None, "purchase", "Ünïcode 🎉"]), "userId": rng.choice([None, "u1"]),
            "anonymousId": rng.choice([None, "a" * rng.randrange(0, 300)]),
            "timestamp": rng.randrange(-10**13, 10**13), "receivedAt": rng.randrange(0, 10**13),
            "payload": '{"x": "' + "y" * rng.randrange(0, 20_000) + '"}', "configRevision": rng.randrange(1, 10**6),
            "replayed": rng.random() < 0.5, "sourceTopic": "p.raw", "sourcePartition": rng.randrange(0, 100),
            "sourceOffset": rng.randrange(0, 10**12),
        }
        parts = OutboundParts(codec.framing(), message_id=record["messageId"], pipeline=record["pipeline"],
                              call=record["type"], user_id=record["userId"], anonymous_id=record["anonymousId"],
                              timestamp_ms=record["timestamp"], received_ms=record["receivedAt"],
                              revision=record["configRevision"], replayed=record["replayed"],
                              source_topic=record["sourceTopic"], source_partition=record["sourcePartition"],
                              source_offset=record["sourceOffset"])
        made = parts.record(integration_part(record["integration"], record["kind"]), record["eventName"],
                            record["payload"].encode())
        assert made == codec.encode(record)
        assert codec.decode(made) == record
