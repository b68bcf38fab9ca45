"""`eventrouter import FILE...`: publish Segment-format JSON Lines (plain or gzip) to the raw topic.

Events keep their messageIds and timestamps (an exported `timestamp` stays authoritative). A line
without a messageId gets one derived from its file, line number and content, so a re-run publishes it
with the same id. Rejected lines go to the rejects file with their reason.

Resume: a checkpoint records, per file, the line up to which every line is acknowledged by Kafka or
rejected. An interrupted import (Ctrl-C, SIGTERM) first waits for what is in flight, so a re-run
starts exactly where it stopped and duplicates nothing. After a hard kill a re-run may publish again
the lines that were in flight (at most the producer's buffer); they carry the same messageIds, which
the router's dedup drops.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

import orjson
from confluent_kafka import KafkaError, Message

from producers.publisher import Publisher
from schemas import EventCodec
from schemas.validation import DEFAULT_LIMITS, Limits, ValidationError, check_message, clean, loads_exact

_NAMESPACE = uuid.UUID("6f1d9c1e-2b7a-4f39-9a51-2f4f0e8d3c11")


@dataclass
class ImportSummary:
    read: int = 0
    published: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0  # lines before the checkpoint of an earlier run
    reasons: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False

    def table(self) -> str:
        lines = [f"read       {self.read:>10,}", f"published  {self.published:>10,}",
                 f"rejected   {self.rejected:>10,}", f"failed     {self.failed:>10,}",
                 f"skipped    {self.skipped:>10,}  (already imported by an earlier run)"]
        lines += [f"  {reason}: {count:,}" for reason, count in self.reasons.most_common()]
        return "\n".join(lines)


def prepare_line(line: bytes, *, origin: str, number: int, write_key: str | None,
                 limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """One JSON line -> a validated message, or ValidationError. Pure."""
    try:
        event = loads_exact(line)
    except (ValueError, RecursionError) as exc:
        raise ValidationError("invalid.json", "", f"not JSON: {str(exc)[:100]}") from None
    if not isinstance(event, dict):
        raise ValidationError("invalid.json", "", "a line must be a JSON object")
    message: dict[str, Any] = clean(event, "", limits)
    if write_key:
        message["writeKey"] = write_key
    if not message.get("messageId"):
        digest = hashlib.sha1(line, usedforsecurity=False).hexdigest()
        message["messageId"] = str(uuid.uuid5(_NAMESPACE, f"{origin}:{number}:{digest}"))
    check_message(message, limits)
    return message


def _open(path: Path) -> IO[bytes]:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(path, "rb")  # type: ignore[return-value]  # a binary file object
    return path.open("rb")


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


class _Checkpoint:
    """Per file (path and size), the line up to which everything is settled."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.done: dict[str, int] = orjson.loads(path.read_bytes()) if path.exists() else {}
        except orjson.JSONDecodeError:
            self.done = {}

    @staticmethod
    def key(file: Path) -> str:
        return f"{file.resolve()}:{file.stat().st_size}"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.done))
        os.replace(tmp, self.path)


class Importer:
    def __init__(self, publisher: Publisher, *, write_key: str | None, rejects: Path, checkpoint: Path,
                 progress: TextIO | None = sys.stderr, limits: Limits = DEFAULT_LIMITS) -> None:
        self.publisher = publisher
        self.write_key = write_key
        self.rejects_path = rejects
        self.checkpoint = _Checkpoint(checkpoint)
        self.progress = progress
        self.limits = limits
        self.summary = ImportSummary()
        self._codec = EventCodec()
        self._pending: set[int] = set()
        self._failed: set[int] = set()
        self._stop = False
        self._last_report = 0.0
        self._started = 0.0

    def run(self, files: Sequence[Path]) -> ImportSummary:
        previous = {sig: signal.signal(sig, self._interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._started = time.monotonic()
        try:
            with self.rejects_path.open("ab") as rejects:
                for file in files:
                    if self._stop:
                        break
                    self._import(file, rejects)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._report(final=True)
        return self.summary

    def _interrupt(self, _signum: int, _frame: object) -> None:
        self._stop = True
        self.summary.interrupted = True

    def _import(self, file: Path, rejects: IO[bytes]) -> None:
        key = self.checkpoint.key(file)
        done_upto = self.checkpoint.done.get(key, 0)
        last = done_upto
        self._pending.clear()
        self._failed.clear()
        for number, line in _lines(file):
            if number <= done_upto:
                self.summary.skipped += 1
                continue
            if self._stop:
                break
            last = number
            self.summary.read += 1
            try:
                message = prepare_line(line, origin=file.name, number=number, write_key=self.write_key,
                                       limits=self.limits)
            except ValidationError as exc:
                self._reject(rejects, file, number, exc, line)
                continue
            self._pending.add(number)
            self.publisher.publish(self._codec.encode(message), message.get("userId") or message.get("anonymousId"),
                                   callback=self._delivered_callback(number))
            if time.monotonic() - self._last_report > 0.5:
                self._report()
                self._save(key, last)
        self.publisher.flush()
        self._save(key, last)

    def _delivered_callback(self, number: int) -> Any:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self.publisher.settle(err)
            self._pending.discard(number)
            if err is None:
                self.summary.published += 1
            else:
                self.summary.failed += 1
                self._failed.add(number)
        return delivered

    def _save(self, key: str, last_read: int) -> None:
        unsettled = self._pending | self._failed
        self.checkpoint.done[key] = (min(unsettled) - 1) if unsettled else last_read
        self.checkpoint.save()

    def _reject(self, rejects: IO[bytes], file: Path, number: int, exc: ValidationError, line: bytes) -> None:
        self.summary.rejected += 1
        self.summary.reasons[exc.reason] += 1
        rejects.write(orjson.dumps({"file": str(file), "line": number, "reason": exc.reason, "message": exc.message,
                                    "text": line[:4000].decode("utf-8", "replace").rstrip("\n")}) + b"\n")

    def _report(self, final: bool = False) -> None:
        self._last_report = time.monotonic()
        if self.progress is None:
            return
        s = self.summary
        rate = s.read / max(self._last_report - self._started, 1e-9)
        text = (f"read {s.read:,}  published {s.published:,}  rejected {s.rejected:,}  failed {s.failed:,}  "
                f"{rate:,.0f} lines/s")
        tty = self.progress.isatty()
        self.progress.write(("\r" + text + ("\n" if final else "")) if tty else text + "\n")
        self.progress.flush()
