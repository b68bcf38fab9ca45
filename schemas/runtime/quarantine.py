"""CrashGuard: a record that keeps killing its process is quarantined instead of crash-looped on.

A consumer loop catches every exception of a record itself and dead-letters it. What it cannot catch is
the process dying on a record: a segfault in compiled code, `os._exit`, the OOM killer. Restarted, it
reads the same record again and dies again, for ever, and every tenant behind that partition waits.
The guard keeps, in a small file of the process's own (under the state folder it is given, one file per
consumer group), the spans of records in progress. A process that dies leaves its spans there; the
next start counts them as crashes:

- a span left in progress counts one crash for its records (merged with the suspect spans it overlaps;
  the group is the file);
- a single crash is most likely not a record's doing (a SIGKILL, a deploy, the OOM killer): the span is
  processed again as usual. Once a span has crashed the process twice (`ALONE_AFTER`), every record of it
  is processed alone, with a commit after it, so a next crash names the one record;
- a record that crashed the process `crashes` times (3 by default) alone is quarantined: dead-lettered
  with reason `quarantined` (`letter()`) and committed past, never processed again.
A suspicion ends once its span is committed, or once the partition is read past it.

Use in a consumer loop (streams/kafka_engine.py does; a forwarder can do the same):

    guard = CrashGuard(state_folder, group)          # stores only
    for span, crashes in guard.recover():            # once at start, before consuming: log them
        ...
    spans = spans_of((topic, partition, offset) for each record of the batch)
    if not guard.suspect(spans):                     # the usual case: one dict check
        guard.begin(spans)                           # one small file write, before processing
        ...process the batch, commit its offsets...
        guard.done(spans)                            # memory only: the next begin() or idle() writes it
    else:                                            # one record at a time
        for each record:
            if guard.verdict(topic, partition, offset) == QUARANTINE:
                write guard.letter(...) to the dead-letter topic
            else:
                guard.begin([(topic, partition, offset, offset)]); process it
            commit past it (synchronously); guard.done([(topic, partition, offset, offset)])
    guard.idle()                                     # nothing in hand: writes the cleared state, once
    guard.close()                                    # at a clean stop

Per batch the cost is one write of a few hundred bytes (no fsync: the file must survive the process,
not the machine). A file that cannot be read is logged and started afresh: the guard never stops a start.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from schemas.deadletters import dead_letter

log = logging.getLogger(__name__)

Span = tuple[str, int, int, int]  # topic, partition, first offset, last offset (inclusive)
QUARANTINED: Final = "quarantined"  # the dead letter's reason
BATCH: Final = "batch"              # verdicts: process it with the others,
ALONE: Final = "alone"              # process it on its own and commit after it,
QUARANTINE: Final = "quarantine"    # dead-letter it without processing it
ALONE_AFTER: Final = 2              # crashes of a span before its records go one at a time


def spans_of(records: Iterable[tuple[str, int, int]]) -> list[Span]:
    """The spans, one per (topic, partition), of records given as (topic, partition, offset)."""
    bounds: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in records:
        seen = bounds.get((topic, partition))
        if seen is None:
            bounds[(topic, partition)] = [offset, offset]
        else:
            seen[0], seen[1] = min(seen[0], offset), max(seen[1], offset)
    return [(topic, partition, first, last) for (topic, partition), (first, last) in bounds.items()]


class CrashGuard:
    """See the module's docstring. `crashes`: how many times a record may kill the process alone."""

    def __init__(self, folder: Path, group: str, *, crashes: int = 3) -> None:
        if crashes < 1:
            raise ValueError("crashes must be at least 1")
        self.path = Path(folder) / f"crashguard-{re.sub(r'[^A-Za-z0-9._-]', '_', group)}.json"
        self.group = group
        self.crashes = crashes
        # (topic, partition) -> first offset -> [last offset, crashes]: spans in progress when it died
        self.suspects: dict[tuple[str, int], dict[int, list[int]]] = {}
        # (topic, partition) -> offset -> crashes with that record alone in progress (kept apart from the
        # spans: a record that began a batch which crashed is both the span's first offset and a record)
        self.alone: dict[tuple[str, int], dict[int, int]] = {}
        self._broken = False
        self._in_progress: list[Span] = []
        self._dirty = False
        self._folder_made = False

    # -- at start -----------------------------------------------------------------------------------------
    def recover(self) -> list[tuple[Span, int]]:
        """Count the spans a dead process left in progress; returns each with its crashes so far."""
        state = self._read()
        for topic, partition, first, last, crashes in state.get("suspects", []):
            self.suspects.setdefault((str(topic), int(partition)), {})[int(first)] = [int(last), int(crashes)]
        for topic, partition, offset, crashes in state.get("alone", []):
            self.alone.setdefault((str(topic), int(partition)), {})[int(offset)] = int(crashes)
        counted: list[tuple[Span, int]] = []
        in_progress = state.get("in_progress", [])
        for topic, partition, first, last in in_progress:
            span: Span = (str(topic), int(partition), int(first), int(last))
            known = self.suspects.setdefault(span[:2], {})
            overlapping = [start for start, (end, _c) in known.items() if start <= span[3] and span[2] <= end]
            crashes = max((known[start][1] for start in overlapping), default=0) + 1
            low = min([span[2], *overlapping])
            high = max([span[3], *(known[start][0] for start in overlapping)])
            for start in overlapping:
                del known[start]
            known[low] = [high, crashes]
            if first == last and len(in_progress) == 1:  # it alone was in progress: it is the one
                records = self.alone.setdefault(span[:2], {})
                crashes = records[first] = records.get(first, 0) + 1
            counted.append((span, crashes))
        self._in_progress = []
        self._write()
        return counted

    # -- per batch ----------------------------------------------------------------------------------------
    def suspect(self, spans: Iterable[Span]) -> bool:
        """Whether any record of `spans` was in progress when the process died (process them alone)."""
        if not self.suspects:
            return False
        for topic, partition, first, last in spans:
            known = self.suspects.get((topic, partition))
            if known and any(start <= last and first <= end and crashes >= ALONE_AFTER
                             for start, (end, crashes) in known.items()):
                return True
        return False

    def verdict(self, topic: str, partition: int, offset: int) -> str:
        """BATCH, ALONE (inside a span that crashed) or QUARANTINE (it crashed the process `crashes` times alone)."""
        known = self.suspects.get((topic, partition))
        if not known:
            return BATCH
        if self.alone.get((topic, partition), {}).get(offset, 0) >= self.crashes:
            return QUARANTINE
        return ALONE if any(start <= offset <= end and crashes >= ALONE_AFTER
                            for start, (end, crashes) in known.items()) else BATCH

    def crashes_of(self, topic: str, partition: int, offset: int) -> int:
        """How many times the process died with this record alone in progress."""
        return self.alone.get((topic, partition), {}).get(offset, 0)

    def begin(self, spans: Sequence[Span]) -> None:
        """Before processing `spans`: they are in progress (written at once). A suspicion the partition
        has been read past (a span starting after it) ends here."""
        for topic, partition, first, _last in spans:
            known = self.suspects.get((topic, partition))
            if known:
                self._forget((topic, partition), known, before=first)
        self._in_progress.extend(spans)
        self._write()

    def done(self, spans: Sequence[Span]) -> None:
        """`spans` are committed: no longer in progress, nor suspect (in memory; the next begin() or
        idle() writes it)."""
        for span in spans:
            if span in self._in_progress:
                self._in_progress.remove(span)
            topic, partition, _first, last = span
            known = self.suspects.get((topic, partition))
            if known:
                self._forget((topic, partition), known, before=last + 1)
        self._dirty = True

    def end(self, spans: Sequence[Span]) -> None:
        """`spans` are no longer in progress, though not committed either (their suspicions stay; in
        memory: the next begin() or idle() writes it)."""
        for span in spans:
            if span in self._in_progress:
                self._in_progress.remove(span)
        self._dirty = True

    def idle(self) -> None:
        """Nothing in hand: write what done() changed (once)."""
        if self._dirty:
            self._write()

    def close(self) -> None:
        """A clean stop: nothing is in progress."""
        self._in_progress = []
        self._write()

    # -- the dead letter ----------------------------------------------------------------------------------
    def letter(self, *, stage: str, topic: str, partition: int, offset: int, value: bytes | None,
               headers: Iterable[tuple[str, bytes | None]] = (), integration: str | None = None,
               message_id: str | None = None) -> dict[str, Any]:
        """The `quarantined` dead letter of a record (schemas/deadletters.py), to encode and write."""
        crashes = self.crashes_of(topic, partition, offset)
        return dead_letter(
            reason=QUARANTINED, stage=stage, original=value or b"", source_topic=topic, source_partition=partition,
            source_offset=offset, headers=headers, integration=integration, message_id=message_id, attempts=crashes,
            message=f"the process exited {crashes} times on this record (consumer group {self.group}); quarantined: "
                    "skipped so the stream goes on")

    # -- the file -----------------------------------------------------------------------------------------
    def _forget(self, where: tuple[str, int], known: dict[int, list[int]], *, before: int) -> None:
        """Drop the suspicions of `where` that end before offset `before` (committed, or read past)."""
        for start in [start for start, (end, _c) in known.items() if end < before]:
            del known[start]
            self._dirty = True
        if not known:
            del self.suspects[where]
        records = self.alone.get(where)
        if records is not None:
            for offset in [offset for offset in records if offset < before]:
                del records[offset]
            if not records:
                del self.alone[where]

    def _read(self) -> dict[str, Any]:
        try:
            state = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("crash guard %s unreadable (%s); starting afresh", self.path, type(exc).__name__)
            return {}
        return state if isinstance(state, dict) else {}

    def _write(self) -> None:
        if self._broken:
            return
        suspects = [[topic, partition, first, end, crashes] for (topic, partition), known in self.suspects.items()
                    for first, (end, crashes) in known.items()]
        alone = [[topic, partition, offset, crashes] for (topic, partition), records in self.alone.items()
                 for offset, crashes in records.items()]
        data = orjson.dumps({"in_progress": self._in_progress, "suspects": suspects, "alone": alone})
        temporary = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            if not self._folder_made:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._folder_made = True
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
        except OSError as exc:  # a full or read-only disk: go on without the guard rather than stop the stream
            self._broken = True
            log.error("crash guard %s not writable (%s): running without it (a record the process keeps dying "
                      "on will not be quarantined)", self.path, type(exc).__name__)
        self._dirty = False
