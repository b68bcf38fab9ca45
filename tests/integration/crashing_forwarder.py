"""`python -m tests.integration.crashing_forwarder <eventrouter arguments>`: eventrouter, whose process exits
at once (os._exit: no exception, no cleanup, as a segfault in compiled code would) when the Amplitude
vendor module is asked to build a request holding an event whose payload contains CRASH_MARKER. A test
harness: production code has no such hook."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

CRASH_MARKER = "kill-the-forwarder-here"


def main() -> int:
    from eventrouter.cli import main as eventrouter
    from forwarders.vendors.amplitude import Amplitude

    build = Amplitude.build

    def build_or_die(self: Amplitude, items: Sequence[Any]) -> Any:
        if any(CRASH_MARKER in str(item.payload) for item in items):
            os._exit(70)
        return build(self, items)

    Amplitude.build = build_or_die  # type: ignore[method-assign]
    return eventrouter(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
