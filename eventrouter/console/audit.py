"""The console's audit log: one record per change (a revision saved or rolled back, a writeKey made or
revoked, a user made, dead letters re-injected, a replay started or cancelled): who, when, what, and the
diff. Appended to the audit topic (Topics.audit), never edited: the topic has no key to compact on and the
console has no way to write anything but a new record."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import orjson

REVISION = "revision"
ROLLBACK = "rollback"
WRITE_KEY = "write_key"
USER = "user"
REINJECT = "reinject"
REPLAY = "replay"
ACTIONS = (REVISION, ROLLBACK, WRITE_KEY, USER, REINJECT, REPLAY)


@dataclass(frozen=True)
class AuditRecord:
    at_ms: int
    who: str
    action: str        # one of ACTIONS
    target: str        # what changed: "revision 7", "pipeline web", "user ana"
    summary: str       # one line a person reads
    diff: str = ""     # for a revision: the unified diff against the one before it (secrets are references)

    def encode(self) -> bytes:
        return orjson.dumps(asdict(self))


def record(who: str, action: str, target: str, summary: str, diff: str = "") -> AuditRecord:
    return AuditRecord(int(time.time() * 1000), who, action, target, summary, diff)


def decode(value: bytes | None) -> AuditRecord | None:
    """A record of the audit topic, or None for bytes that are not one."""
    try:
        data = orjson.loads(value or b"")
        return AuditRecord(int(data["at_ms"]), str(data["who"]), str(data["action"]), str(data["target"]),
                           str(data["summary"]), str(data.get("diff", "")))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
