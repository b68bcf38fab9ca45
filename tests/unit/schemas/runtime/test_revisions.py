"""Config revisions as records: what is published and how it is read back."""

from __future__ import annotations

import orjson

from schemas.config import resolved_document
from schemas.runtime.revisions import document_sha, parse_revision


def test_a_published_revision_reads_back_with_its_number_from_the_offset() -> None:
    document = resolved_document("pipelines: [{name: web, write_keys: [wk1], integrations: [a]}]\n"
                                 "integrations: [{name: a, kind: amplitude, playbook: 'starter:amplitude', "
                                 "connection: {api_key: '${AMP_KEY}'}}]")
    assert isinstance(document["integrations"][0]["playbook"], dict)  # the starter kit is inlined
    value = orjson.dumps({"document": document, "sha256": document_sha(document), "appliedAt": 5,
                          "appliedBy": "ada@host", "source": "eventrouter.yaml"})
    revision = parse_revision(41, value)
    assert revision is not None and revision.number == 42 and revision.source == "eventrouter.yaml"
    assert revision.config().integration("a").connection == {"api_key": "${AMP_KEY}"}  # a reference, never a value
    assert "42" in revision.summary()


def test_the_sha_does_not_depend_on_key_order() -> None:
    assert document_sha({"a": 1, "b": [1, 2]}) == document_sha({"b": [1, 2], "a": 1})


def test_a_record_that_is_not_a_revision_is_skipped() -> None:
    assert parse_revision(0, b"not json") is None
    assert parse_revision(0, None) is None
    assert parse_revision(0, orjson.dumps({"document": [], "sha256": "x", "appliedAt": 1})) is None
