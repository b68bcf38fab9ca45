"""The dedup state past its memory limit: the oldest messageIds go to an SQLite file of the worker's own
(streams/seen_disk.py), are still found within the window, and leave it with the window."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from streams.dedup import Deduplicator, pack_seen
from streams.seen_disk import DiskSeen


def _dedup(tmp_path: Path, memory_keys: int = 4) -> tuple[Deduplicator, dict[str, Any], DiskSeen]:
    store: dict[str, Any] = {}
    disk = DiskSeen(tmp_path)
    return Deduplicator(store, "log", 10, per_key=False, overflow=disk, memory_keys=memory_keys), store, disk


def test_memory_holds_its_limit_and_the_oldest_keys_are_found_on_disk(tmp_path: Path) -> None:
    dedup, store, disk = _dedup(tmp_path)
    for i in range(10):
        dedup.mark([(i % 3, f"k{i}")], now_ms=1_000 + i)
        assert len(store) <= 4
    assert disk.size + len(store) == 10 and disk.size > 0
    keys = [f"k{i}" for i in range(12)]
    dedup.prefetch(keys, now_ms=5_000)
    assert [k for k in keys if dedup.seen(k, 5_000)] == keys[:10]
    assert disk.find(["k0"], 0) == {"k0": pack_seen(1_000, 0)}


def test_keys_on_disk_leave_with_the_window(tmp_path: Path) -> None:
    dedup, store, disk = _dedup(tmp_path)
    dedup.mark([(0, f"old{i}") for i in range(6)], now_ms=1_000)
    dedup.mark([(0, f"new{i}") for i in range(6)], now_ms=8_000)
    dedup.prefetch(["old0", "new0"], now_ms=12_000)  # old ones are out of the window, still on disk
    assert not dedup.seen("old0", 12_000) and dedup.seen("new0", 12_000)
    dedup.expire(12_000)
    assert disk.find(["old0", "old1"], 0) == {}
    dedup.expire(30_000)
    assert disk.size == 0 and store == {}


def test_a_restore_past_the_limit_spills_too(tmp_path: Path) -> None:
    dedup, store, disk = _dedup(tmp_path, memory_keys=1_000)
    assert dedup.load(2_000, 4, (f"m{i}" for i in range(5_000))) == 5_000
    assert len(store) <= 1_000 and disk.size + len(store) == 5_000
    dedup.prefetch(["m0", "m4999", "x"], now_ms=3_000)
    assert dedup.seen("m0", 3_000) and dedup.seen("m4999", 3_000) and not dedup.seen("x", 3_000)


def test_a_lookup_of_more_keys_than_one_query_takes(tmp_path: Path) -> None:
    disk = DiskSeen(tmp_path)
    disk.put([(f"a{i}", pack_seen(100, 1)) for i in range(1_200)])
    found = disk.find([f"a{i}" for i in range(0, 2_400, 2)], pack_seen(50, 0))
    assert len(found) == 600 and disk.find(["a1"], pack_seen(200, 0)) == {}


def test_the_file_is_removed_on_close_and_a_killed_workers_file_by_the_next(tmp_path: Path) -> None:
    disk = DiskSeen(tmp_path)
    disk.put([("a", 1)])
    assert disk.path.exists()
    disk.close()
    assert not disk.path.exists()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / f"dedup-{gone.stdout.strip()}-abcd.sqlite"
    orphan.write_bytes(b"")
    mine = tmp_path / f"dedup-{os.getpid()}-other.sqlite"
    mine.write_bytes(b"")
    DiskSeen(tmp_path).close()
    assert not orphan.exists() and mine.exists()
