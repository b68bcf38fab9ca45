"""Figures of the reliability tests: each row of the fault table (docs/reliability.md) that a test covers
reports what it measured (lost, duplicates, dead letters by reason, recovery time, ...), and the run ends
with one table of them (tests/conftest.py prints it). Lost must be 0 in every row; the tests assert it themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    row: str                    # the fault or input, as the fault table names it
    test: str
    figures: dict[str, Any] = field(default_factory=dict)


ROWS: list[Row] = []


class Figures:
    """The `figures` fixture: `figures.report("SIGKILL a stream worker", lost=0, duplicates=3)`."""

    def __init__(self, test: str) -> None:
        self.test = test

    def report(self, row: str, **figures: Any) -> None:
        ROWS.append(Row(row, self.test, figures))


def table() -> list[str]:
    if not ROWS:
        return []
    lines = ["| fault or input | test | figures |", "|---|---|---|"]
    for row in sorted(ROWS, key=lambda r: r.row):
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in row.figures.items())
        lines.append(f"| {row.row} | {row.test.split('::', 1)[-1]} | {shown} |")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in sorted(value.items())) + "}"
    return str(value)
