"""The console's store in memory (eventrouter/console/store.py's Store): revisions and audit records kept
in lists, validated as the Kafka store validates them. For the console's handler tests and its benchmark."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from eventrouter.console.audit import AuditRecord
from eventrouter.console.store import LiveEvent
from schemas.config import config_from_document
from schemas.runtime.revisions import Revision, document_sha


class MemoryStore:
    def __init__(self, document: Mapping[str, Any], *, by: str = "ops@host", at_ms: int = 1_700_000_000_000) -> None:
        self.revisions = [Revision(1, dict(document), document_sha(document), at_ms, by, "eventrouter.yaml")]
        self.records: list[AuditRecord] = []
        self.raw: list[tuple[str, LiveEvent]] = []  # (writeKey, event), oldest first

    def history(self) -> list[Revision]:
        return list(self.revisions)

    def publish(self, document: Mapping[str, Any], source: str, by: str) -> Revision:
        config_from_document(document, source)
        revision = Revision(len(self.revisions) + 1, dict(document), document_sha(document),
                            self.revisions[-1].applied_at_ms + 1000, by, source)
        self.revisions.append(revision)
        return revision

    def rollback(self, number: int, by: str) -> Revision:
        return self.publish(self.revisions[number - 1].document, f"rollback to {number}", by)

    def audit(self) -> list[AuditRecord]:
        return list(self.records)

    def append(self, entry: AuditRecord) -> None:
        self.records.append(entry)

    def recent_events(self, write_keys: Collection[str], limit: int) -> list[LiveEvent]:
        return [event for key, event in reversed(self.raw) if key in write_keys][:limit]
