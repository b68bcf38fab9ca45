"""item_from: an Outbound record (and its retry headers) as the Item a vendor module reads, field by field."""

import orjson
import pytest

from forwarders.records import ATTEMPTS, FIRST_ATTEMPT, ITEM_FIELDS, item_from
from schemas import outbound_codec
from schemas.errors import DecodeError

RECORD = {"messageId": "m-1", "integration": "amp", "kind": "amplitude", "pipeline": "web", "type": "identify",
          "eventName": "Signed Up", "userId": "u-1", "anonymousId": "a-1", "timestamp": 1_764_151_200_000,
          "receivedAt": 1_764_151_200_100, "payload": orjson.dumps({"event_type": "Signed Up"}).decode(),
          "configRevision": 3, "replayed": False, "sourceTopic": "p.raw", "sourcePartition": 2, "sourceOffset": 9}


def test_every_field_of_the_item_comes_from_its_own_place() -> None:
    value = outbound_codec().encode(RECORD)
    item = item_from(outbound_codec(fields=ITEM_FIELDS), value, topic="p.retry.amp", partition=4, offset=77,
                     written_ms=1_764_151_200_200, headers=[(ATTEMPTS, b"2"), (FIRST_ATTEMPT, b"1764151200150")])
    assert item._asdict() == {
        "message_id": "m-1", "payload": {"event_type": "Signed Up"}, "event_name": "Signed Up", "call": "identify",
        "user_id": "u-1", "anonymous_id": "a-1", "timestamp_ms": 1_764_151_200_000, "partition": 4, "offset": 77,
        "raw": value, "attempts": 2, "first_attempt_ms": 1_764_151_200_150, "topic": "p.retry.amp",
        "written_ms": 1_764_151_200_200}


def test_a_record_of_the_integration_topic_has_made_no_attempt_yet() -> None:
    value = outbound_codec().encode({**RECORD, "eventName": None, "anonymousId": None})
    item = item_from(outbound_codec(fields=ITEM_FIELDS), value, topic="p.out.amp", partition=0, offset=1, written_ms=5)
    assert (item.attempts, item.first_attempt_ms, item.event_name, item.anonymous_id) == (0, None, None, None)


def test_a_payload_that_is_not_a_json_object_is_a_decode_error() -> None:
    value = outbound_codec().encode({**RECORD, "payload": "[1, 2]"})
    with pytest.raises(DecodeError) as error:
        item_from(outbound_codec(fields=ITEM_FIELDS), value, topic="t", partition=0, offset=0, written_ms=0)
    assert error.value.reason == "decode.corrupt"
