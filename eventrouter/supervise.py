"""The foreground loop of `eventrouter up` (and of the main job's --keep-running): it drives a Stack
(eventrouter/stack.py), taking up new config revisions, starting again the children that exit, printing
the progress line and saying when the broker goes away and comes back, until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

from eventrouter.stack import METRICS_FILE, Stack
from schemas.config import Config

__all__ = ["run_up"]


def run_up(stack: Stack, *, every_s: float = 5.0, until: Any = None, start: bool = True) -> int:
    """Run in the foreground, printing progress, until SIGTERM/SIGINT (or `until()`); then stop all.
    No child and no broker outage stops it: a child that exits is started again (`Stack.revive`, with
    back-off while it keeps exiting) and reported; a broker that does not answer is said once ("broker
    unreachable since ...") and in each progress line, and again when it is back. The progress goes to
    `up.json` in the logs folder too (`eventrouter status` reads it). Status 1 if a child was failing
    when it stopped (the exit summary names it), else 0. `start=False`: the stack runs already (the main
    job's --keep-running)."""
    from eventrouter.progress import unreachable, write_snapshot
    from schemas.runtime.revisions import ConfigStore, RevisionWatcher

    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    if start:
        stack.start()
        print("\n".join(stack.describe()), flush=True)
    failing: list[str] = []
    revisions: list[tuple[int, Config]] = []  # handed over by the watcher's thread, taken up here
    watcher = RevisionWatcher(ConfigStore(stack.bootstrap, stack.topics),
                              lambda revision, config: revisions.append((revision.number, config)))
    watcher.start()
    try:
        last = 0.0
        down_since: float | None = None
        while not stopping and not (until and until()):
            while revisions:
                for line in stack.follow(*revisions.pop(0)):
                    print(line, flush=True)
            for line in stack.revive():
                print(line, file=sys.stderr, flush=True)
            if time.monotonic() - last >= every_s:
                last = time.monotonic()
                progress = stack.progress()
                if progress.broker_down_since != down_since:
                    print(f"{unreachable(progress.broker_down_since)} ({stack.bootstrap}): the processes wait "
                          "for it" if progress.broker_down_since is not None else
                          f"broker reachable again after {time.time() - (down_since or time.time()):.0f} s",
                          file=sys.stderr, flush=True)
                    down_since = progress.broker_down_since
                print(progress.line(), flush=True)
                try:
                    write_snapshot(stack.folder, progress, bootstrap=stack.bootstrap, prefix=stack.topics.prefix)
                    stack.write_metrics()
                except OSError as exc:
                    print(f"cannot write {stack.folder}: {exc}", file=sys.stderr, flush=True)
            time.sleep(0.2)
        failing = stack.failing()
    finally:
        watcher.stop()
        print("stopping: gateway, workers, forwarders (each drains and commits)", flush=True)
        stack.stop()
        for name in ("up.json", METRICS_FILE):
            (stack.folder / name).unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failing:
        print("failing when stopped: " + "; ".join(failing), file=sys.stderr, flush=True)
    if stack.restarts:
        print("started again while up: " + ", ".join(f"{role} {n}x" for role, n in sorted(stack.restarts.items())),
              file=sys.stderr, flush=True)
    return 1 if failing else 0
