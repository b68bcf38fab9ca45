"""Topic names shared by every part of the pipeline, in one place."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEGAL = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


@dataclass(frozen=True)
class Topics:
    """The topic layout under one prefix (one deployment, or one test)."""

    prefix: str = "eventrouter"

    def __post_init__(self) -> None:
        if not _LEGAL.match(self.prefix):
            raise ValueError(f"topic prefix {self.prefix!r} must match {_LEGAL.pattern}")

    @property
    def raw(self) -> str:
        """Every accepted Segment call, Avro `Event`, keyed by userId or anonymousId."""
        return f"{self.prefix}.raw"

    @property
    def invalid(self) -> str:
        """What could not be routed, Avro `DeadLetter`."""
        return f"{self.prefix}.invalid"

    @property
    def config(self) -> str:
        """Compacted: numbered config revisions."""
        return f"{self.prefix}.config"

    @property
    def receipts(self) -> str:
        return f"{self.prefix}.receipts"

    @property
    def reinjected(self) -> str:
        """Compacted: which dead letters were re-injected (key: topic/partition/offset), so never twice."""
        return f"{self.prefix}.reinjected"

    @property
    def heartbeats(self) -> str:
        """Each worker's and forwarder's heartbeat: who, when, its counters (the console's overview)."""
        return f"{self.prefix}.heartbeats"

    @property
    def audit(self) -> str:
        """Append-only: the console's audit log (revisions, writeKey and user changes: who, when, what)."""
        return f"{self.prefix}.audit"

    def integration(self, name: str) -> str:
        """Avro `Outbound` records for one integration."""
        return f"{self.prefix}.out.{_checked(name)}"

    def retry(self, name: str) -> str:
        return f"{self.prefix}.retry.{_checked(name)}"

    def dead_letters(self, name: str) -> str:
        return f"{self.prefix}.dlq.{_checked(name)}"


def _checked(name: str) -> str:
    if not _LEGAL.match(name):
        raise ValueError(f"integration name {name!r} must match {_LEGAL.pattern}")
    return name
