"""`eventrouter import` on 100k events: progress, a correct summary, rejects with reasons, resume."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from schemas import EventCodec
from tests.integration.kafka_helpers import consume_all, fresh_topics

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
GOOD = 100_000
BAD_LINES = [b"{not json\n", b'["an array"]\n', b'{"type": "track", "userId": "u"}\n',
             b'{"type": "identify", "traits": {}}\n', b'{"type": "track", "userId": "u", "event": "E", '
             b'"timestamp": "last tuesday"}\n']


def _export(path: Path, bad_every: int = 2000) -> tuple[int, int]:
    """A Segment-style export: gzip JSON Lines, original ids and timestamps, some bad lines mixed in."""
    bad = 0
    with gzip.open(path, "wb", compresslevel=1) as out:
        for i in range(GOOD):
            event = {"type": "track" if i % 3 else "identify", "messageId": f"exp-{i}", "userId": f"user-{i % 997}",
                     "timestamp": f"2024-03-{1 + i % 28:02d}T12:00:00.000Z", "receivedAt": "2024-03-29T00:00:00Z",
                     "event": "Exported", "properties": {"i": i}, "traits": {"n": i}}
            if i % 100 == 0:
                del event["messageId"]  # gets a deterministic id
            out.write(orjson.dumps(event) + b"\n")
            if i % bad_every == 0:
                out.write(BAD_LINES[bad % len(BAD_LINES)])
                bad += 1
    return GOOD, bad


def _run_import(bootstrap: str, prefix: str, export: Path, tmp: Path, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "eventrouter", "import", str(export), "--bootstrap-servers", bootstrap,
         "--topic-prefix", prefix, "--write-key", "wk_import", "--rejects", str(tmp / "rejects.jsonl"),
         "--checkpoint", str(tmp / "checkpoint.json")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)  # type: ignore[call-overload]


def _summary(stdout: str) -> dict[str, int]:
    return {k: int(v.replace(",", "")) for k, v in re.findall(r"^(read|published|rejected|failed|skipped)\s+([\d,]+)",
                                                              stdout, re.M)}


def _received(bootstrap: str, topic: str, expected: int) -> Counter[str]:
    codec = EventCodec()
    return Counter(codec.decode(m.value())["messageId"] for m in consume_all(bootstrap, topic, expected, timeout=120,
                                                                               settle=1))


def test_import_100k_events_with_progress_summary_and_rejects(bootstrap: str, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl.gz"
    good, bad = _export(export)
    topics = fresh_topics(bootstrap)
    proc = _run_import(bootstrap, topics.prefix, export, tmp_path)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert _summary(stdout) == {"read": good + bad, "published": good, "rejected": bad, "failed": 0, "skipped": 0}
    assert re.search(r"read [\d,]+ +published [\d,]+ +rejected [\d,]+ .* lines/s", stderr)  # progress
    rejects = [orjson.loads(line) for line in (tmp_path / "rejects.jsonl").read_bytes().splitlines()]
    assert len(rejects) == bad
    assert Counter(r["reason"] for r in rejects) == Counter(
        {"invalid.json": 20, "invalid.missing_field": 10, "invalid.identity": 10, "invalid.timestamp": 10})
    assert all(r["line"] > 0 and r["message"] for r in rejects)
    received = _received(bootstrap, topics.raw, good)
    assert len(received) == good and max(received.values()) == 1
    assert {f"exp-{i}" for i in range(GOOD) if i % 100} <= received.keys()
    sample = EventCodec().decode(consume_all(bootstrap, topics.raw, 1)[0].value())
    assert sample["timestamp"].startswith("2024-03-") and sample["receivedAt"] == "2024-03-29T00:00:00Z"
    assert sample["writeKey"] == "wk_import"


def test_interrupted_import_resumes_without_duplicates(bootstrap: str, tmp_path: Path) -> None:
    export = tmp_path / "export.jsonl.gz"
    good, bad = _export(export, bad_every=25_000)
    topics = fresh_topics(bootstrap)
    first = _run_import(bootstrap, topics.prefix, export, tmp_path)
    assert first.stderr is not None
    first.stderr.readline()  # the first progress line: it is publishing
    time.sleep(0.3)
    os.kill(first.pid, signal.SIGINT)
    out1, _err1 = first.communicate(timeout=300)
    assert first.returncode == 130, out1
    s1 = _summary(out1)
    assert 0 < s1["read"] < good + bad

    second = _run_import(bootstrap, topics.prefix, export, tmp_path)
    out2, err2 = second.communicate(timeout=600)
    assert second.returncode == 0, err2
    s2 = _summary(out2)
    assert s2["skipped"] == s1["read"]
    assert s1["published"] + s2["published"] == good
    assert s1["rejected"] + s2["rejected"] == bad
    received = _received(bootstrap, topics.raw, good)
    assert len(received) == good
    assert max(received.values()) == 1  # no duplicates


def test_with_no_broker_import_exits_1_after_its_connect_timeout_in_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    lines = tmp_path / "events.jsonl"
    lines.write_bytes(b'{"type": "track", "userId": "u", "event": "E"}\n' * 100)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "eventrouter", "import", str(lines), "--bootstrap-servers", closed,
                           "--connect-timeout", "3", "--checkpoint", str(tmp_path / "cp.json"), "--rejects",
                           str(tmp_path / "rejects.jsonl")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 60
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) <= 2, done.stderr
    assert f"eventrouter: no broker of {closed} answered within 3 s; nothing imported" in done.stderr
    assert f"broker {closed} unreachable since" in done.stderr  # which address, once
