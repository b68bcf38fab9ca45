"""The part of a worker's dedup state that does not fit in memory: messageIds seen within the window but
no longer among the newest (streams/dedup.py Deduplicator keeps those in a dict), in an SQLite file of the
worker's own.

The file is a cache, not a store of record: it starts empty, is removed when the worker stops (and, if the
worker was killed, by the next worker that starts in the same folder), and is never made durable
(no journal, no fsync). What survives restarts is the dedup log in Kafka (streams/kafka_engine.py).

Rows are (hash of the key, key, packed seen-at): the index is on the 8-byte hash, which Python computed
for the dict anyway (hashes differ between processes; so does the file), and the key confirms a match.
Rows go in oldest first, so what falls out of the window is a prefix by rowid, deleted by range."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import uuid
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

_PER_QUERY: Final = 500  # keys per lookup (SQLite allows 999 parameters in its oldest builds)


class DiskSeen:
    """Spilled entries `key -> packed seen-at` (streams/dedup.py pack_seen), oldest first."""

    def __init__(self, folder: Path, *, cache_kib: int = 8192) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        remove_orphans(folder)
        self.path = folder / f"dedup-{os.getpid()}-{uuid.uuid4().hex[:8]}.sqlite"
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{cache_kib}", "temp_store=MEMORY"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE seen (h INTEGER NOT NULL, k TEXT NOT NULL, v INTEGER NOT NULL)")
        self._db.execute("CREATE INDEX seen_h ON seen (h)")
        self._puts: deque[tuple[int, int]] = deque()  # per put: (its last rowid, its newest packed seen-at)
        self.size = 0

    def put(self, entries: Sequence[tuple[str, int]]) -> None:
        """Entries (key, packed seen-at), oldest first, all newer than those put before."""
        if not entries:
            return
        db = self._db
        db.execute("BEGIN")
        db.executemany("INSERT INTO seen VALUES (?, ?, ?)", [(hash(k), k, v) for k, v in entries])
        db.execute("COMMIT")
        last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
        self._puts.append((int(last), max(v for _k, v in entries)))
        self.size += len(entries)

    def find(self, keys: Sequence[str], since_packed: int) -> dict[str, int]:
        """Those of `keys` on disk with a packed seen-at >= since_packed: key -> the newest."""
        found: dict[str, int] = {}
        if not self.size:
            return found
        for start in range(0, len(keys), _PER_QUERY):
            chunk = keys[start:start + _PER_QUERY]
            wanted = set(chunk)
            query = f"SELECT k, v FROM seen WHERE h IN ({','.join('?' * len(chunk))}) AND v >= ?"
            for key, value in self._db.execute(query, [*(hash(k) for k in chunk), since_packed]):
                if key in wanted and value > found.get(key, -1):
                    found[key] = value
        return found

    def drop_before(self, cutoff_packed: int) -> int:
        """Delete the puts whose newest entry is older than the cutoff; returns the entries deleted."""
        last = None
        while self._puts and self._puts[0][1] < cutoff_packed:
            last = self._puts.popleft()[0]
        if last is None:
            return 0
        gone = self._db.execute("DELETE FROM seen WHERE rowid <= ?", (last,)).rowcount
        self.size = max(0, self.size - gone)
        return int(gone)

    def close(self) -> None:
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def remove_orphans(folder: Path) -> None:
    """Remove the files of workers that are gone (killed before they could remove their own)."""
    for path in folder.glob("dedup-*.sqlite"):
        try:
            pid = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            log.info("removed %s, the dedup overflow of a worker that is gone", path.name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True
