"""The crash guard on its own: each "process" is a fresh CrashGuard on the same folder; a crash is a
process that began spans and never finished them."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import deadletter_codec
from schemas.runtime.quarantine import ALONE, BATCH, QUARANTINE, QUARANTINED, CrashGuard, spans_of


def _run(folder: Path, records: list[int], poison: int | None, crashes: int = 3) -> tuple[list[int], list[int], bool]:
    """One process reading partition 0 from `records[0]` as the engine does: batches of 4 normally, one
    at a time where the guard says so. Returns (records processed, records quarantined, died)."""
    guard = CrashGuard(folder, "g", crashes=crashes)
    guard.recover()
    processed: list[int] = []
    quarantined: list[int] = []
    for i in range(0, len(records), 4):
        batch = records[i:i + 4]
        spans = spans_of(("t", 0, o) for o in batch)
        if not guard.suspect(spans):
            guard.begin(spans)
            if poison in batch:
                return processed, quarantined, True
            processed += batch
            guard.done(spans)
            continue
        for offset in batch:
            span = ("t", 0, offset, offset)
            if guard.verdict("t", 0, offset) == QUARANTINE:
                quarantined.append(offset)
            else:
                guard.begin([span])
                if offset == poison:
                    return processed, quarantined, True
                processed.append(offset)
            guard.done([span])
    guard.close()
    return processed, quarantined, False


@pytest.mark.parametrize("poison", [105, 100, 104])  # mid-batch; the first record read; a batch's first
def test_a_record_that_kills_the_process_is_quarantined_after_n_crashes_alone_and_the_rest_goes_on(
        tmp_path: Path, poison: int) -> None:
    records = list(range(100, 112))
    committed = 100
    starts = 0
    quarantined: list[int] = []
    processed: list[int] = []
    while True:
        starts += 1
        done, quarantined, died = _run(tmp_path, [o for o in records if o >= committed], poison=poison)
        processed += done
        if done or quarantined:
            committed = max(done + quarantined) + 1
        if not died:
            break
        assert starts < 10, "crash loop"
    # starts 1-2 die in a batch, starts 3-5 die on the poison alone (3 crashes), start 6 quarantines it
    assert starts == 6 and quarantined == [poison]
    assert sorted(set(processed)) == [o for o in records if o != poison]
    assert CrashGuard(tmp_path, "g").recover() == []  # a clean stop leaves nothing in progress
    assert CrashGuard(tmp_path, "g").suspects == {}


def test_a_second_crash_on_a_batch_makes_its_records_go_alone_and_then_back_to_batches(tmp_path: Path) -> None:
    guard = CrashGuard(tmp_path, "g")
    guard.recover()
    guard.begin([("t", 0, 10, 19), ("t", 1, 5, 9)])  # the process dies here: a SIGKILL, say
    once = CrashGuard(tmp_path, "g")
    assert once.recover() == [(("t", 0, 10, 19), 1), (("t", 1, 5, 9), 1)]
    assert once.verdict("t", 0, 12) == BATCH and not once.suspect([("t", 0, 10, 19)])  # once is no pattern
    once.begin([("t", 0, 12, 25), ("t", 1, 5, 9)])  # and dies again on (part of) the same records
    again = CrashGuard(tmp_path, "g")
    assert again.recover() == [(("t", 0, 12, 25), 2), (("t", 1, 5, 9), 2)]
    assert again.verdict("t", 0, 12) == ALONE and again.verdict("t", 0, 26) == BATCH
    assert again.verdict("t", 2, 12) == BATCH
    assert again.suspect([("t", 0, 18, 30)]) and not again.suspect([("t", 0, 26, 30), ("t", 1, 10, 12)])
    again.begin([("t", 0, 10, 10)])
    again.done([("t", 0, 10, 10)])
    assert again.verdict("t", 0, 11) == ALONE  # the rest of the span still goes alone
    again.done([("t", 0, 25, 25)])
    again.begin([("t", 1, 30, 40)])  # partition 1 read past its suspect span (committed elsewhere)
    assert again.suspects == {} and not again.suspect([("t", 0, 10, 19)])


def test_the_crash_count_is_kept_per_group_and_n_is_configurable(tmp_path: Path) -> None:
    for _ in range(2):
        guard = CrashGuard(tmp_path, "router", crashes=2)
        guard.recover()
        guard.begin([("t", 0, 7, 7)])
    other = CrashGuard(tmp_path, "forwarder-amp", crashes=2)
    assert other.recover() == [] and other.verdict("t", 0, 7) == BATCH
    guard = CrashGuard(tmp_path, "router", crashes=2)
    assert guard.recover() == [(("t", 0, 7, 7), 2)]
    assert guard.verdict("t", 0, 7) == QUARANTINE and guard.crashes_of("t", 0, 7) == 2
    letter = deadletter_codec().decode(deadletter_codec().encode(guard.letter(
        stage="route", topic="t", partition=0, offset=7, value=b"raw", headers=[("h", b"v")])))
    assert letter["reason"] == QUARANTINED and letter["stage"] == "route" and letter["originalBytes"] == b"raw"
    assert (letter["sourceTopic"], letter["sourcePartition"], letter["sourceOffset"]) == ("t", 0, 7)
    assert "exited 2 times on this record" in letter["message"] and letter["attempts"] == 2
    with pytest.raises(ValueError):
        CrashGuard(tmp_path, "g", crashes=0)


def test_an_unreadable_state_file_is_started_afresh(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    guard = CrashGuard(tmp_path, "g")
    guard.path.write_bytes(b"{not json")
    assert guard.recover() == [] and "unreadable" in caplog.text
    guard.begin([("t", 0, 1, 2)])
    assert CrashGuard(tmp_path, "g").recover() == [(("t", 0, 1, 2), 1)]


def test_done_writes_nothing_until_the_next_begin_or_idle(tmp_path: Path) -> None:
    guard = CrashGuard(tmp_path, "g")
    guard.recover()
    guard.begin([("t", 0, 1, 2)])
    written = guard.path.stat().st_mtime_ns, guard.path.read_bytes()
    guard.done([("t", 0, 1, 2)])
    assert guard.path.read_bytes() == written[1]  # per batch: one write, at begin
    guard.idle()
    assert CrashGuard(tmp_path, "g").recover() == []


def test_a_guard_that_cannot_write_never_stops_the_stream(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file where the guard's folder should be")
    guard = CrashGuard(tmp_path / "blocked" / "guard", "g")
    assert guard.recover() == []
    guard.begin([("t", 0, 1, 2)])  # logged once; the stream goes on without the guard
    guard.done([("t", 0, 1, 2)])
    guard.idle()
    guard.close()
