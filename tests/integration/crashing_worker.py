"""`python -m tests.integration.crashing_worker <eventrouter arguments>`: eventrouter, whose process exits
at once (os._exit: no exception, no cleanup, as a segfault in compiled code would) when the stream worker
is handed a record whose bytes contain CRASH_MARKER. A test harness: production code has no such hook."""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ["EVENTROUTER_PURE"] = "1"  # plain Python, so the router's method can be replaced

CRASH_MARKER = b"kill-the-process-here"


def main() -> int:
    from eventrouter.cli import main as eventrouter
    from streams.router import Router

    admit = Router.admit

    def admit_or_die(self: Router, source: Any) -> Any:
        if source.value and CRASH_MARKER in source.value:
            os._exit(70)
        return admit(self, source)

    Router.admit = admit_or_die  # type: ignore[method-assign]
    return eventrouter(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
