"""Which integrations share a forwarder process under `eventrouter up --forwarder-processes N`
(forwarders/host.py runs many in one process, each isolated on a thread of its own). Pure.

The integrations are dealt in name order into N packs, so a pack's members do not depend on the order
of the config file. A new config revision changes as few packs as it can: a pack is started again when
one of its integrations changed its settings or is no longer delivered to, or when it takes a new one
(into the smallest pack); the others are not touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def packs_for(names: Iterable[str], processes: int) -> list[list[str]]:
    """`names` in at most `processes` packs (none empty), dealt in name order."""
    ordered = sorted(names)
    count = max(1, min(processes, len(ordered)))
    return [ordered[i::count] for i in range(count)] if ordered else []


def repack(packs: Sequence[Sequence[str]], start: set[str], restart: set[str], stop: set[str], processes: int
           ) -> tuple[list[list[str]], set[int]]:
    """The packs after a new revision (same positions; a pack left empty stays, empty; up to `processes`
    packs as integrations come) and the positions whose process must be started again (or stopped, if
    empty now)."""
    out = [[name for name in pack if name not in stop] for pack in packs]
    touched = {i for i, pack in enumerate(packs) if set(pack) & (restart | stop)}
    for name in sorted(start):
        if len(out) < max(1, processes):
            out.append([])
        smallest = min(range(len(out)), key=lambda i: (len(out[i]), i))
        out[smallest].append(name)
        touched.add(smallest)
    return [sorted(pack) for pack in out], touched
