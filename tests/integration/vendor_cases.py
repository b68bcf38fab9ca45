"""Per vendor: a stand-in, a connection to it, payloads that carry a known id, and how to find that id in
what the stand-in accepted; so one conformance test runs for every vendor module. Each stand-in says all
of it (eventrouter/dev/standins/server.py: `credential`, `settings`, `sample`, `carried`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventrouter.dev.standins import STAND_INS, StandIn
from schemas.catalogue import KINDS

SECRETS = {kind: STAND_INS[kind].credential for kind in KINDS}


@dataclass(frozen=True)
class VendorCase:
    kind: str
    stand_in: StandIn
    connection: dict[str, Any]             # secrets as values (in-process forwarders)
    connection_yaml: str                   # secrets as ${ENV} references (forwarder processes)
    payload: Callable[[int, str], dict[str, Any]]  # (index, messageId) -> vendor-shaped payload
    ident: Callable[[dict[str, Any]], str]         # an accepted event -> the messageId it carries

    def accepted_ids(self) -> list[str]:
        return [self.ident(e) for e in list(self.stand_in.accepted)]


def case(kind: str) -> VendorCase:
    """A started stand-in for `kind` and everything a test needs to send it events. The stand-ins listen on
    plain http on loopback: every connection opts in (`allow_http`, `allow_private`; the test run lists
    loopback in EVENTROUTER_PRIVATE_NETWORKS, tests/conftest.py)."""
    now_s = int(time.time())
    stand_in = STAND_INS[kind]().start()
    sample = stand_in.sample
    return VendorCase(kind, stand_in, stand_in.connection(), json.dumps(stand_in.connection("${SECRET}")),
                      lambda i, m: sample(i, m, now_s), stand_in.carried)
