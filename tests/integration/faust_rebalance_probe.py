"""A Faust app for the rebalance reproduction (tests/integration/test_faust_rebalance.py): one slow agent
over a 2-partition topic, a table (recovery then takes the table path, as the worker's dedup table makes
it), a small stream buffer (the drain loop waits for the stream, as under load), and a journal of what
happened: each record the stream yields, each partition assigned or revoked, and each write of Faust's
read offset for a partition this member does not hold.

Run as a subprocess: python -m faust -A tests.integration.faust_rebalance_probe worker
with PROBE_BOOTSTRAP, PROBE_IN, PROBE_GROUP, PROBE_DATADIR, PROBE_JOURNAL and PROBE_ACK (1: ack each
record after the batch; 0: never ack) in the environment.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, ClassVar

import faust

app = faust.App(
    os.environ.get("PROBE_GROUP", "probe-rebalance"),
    broker=f"kafka://{os.environ.get('PROBE_BOOTSTRAP', '127.0.0.1:9092')}",
    datadir=os.environ.get("PROBE_DATADIR", "/tmp/faust-rebalance-probe"),
    web_enabled=False, topic_replication_factor=1, topic_partitions=2, stream_buffer_maxsize=16,
    broker_commit_interval=0.5, stream_wait_empty=False, consumer_auto_offset_reset="earliest",
    broker_session_timeout=6.0, broker_heartbeat_interval=1.0,
)
source = app.topic(os.environ.get("PROBE_IN", "in"), value_type=bytes, value_serializer="raw", partitions=2)
table = app.Table("probe", default=None, partitions=2)
ACK = os.environ.get("PROBE_ACK", "1") == "1"
JOURNAL = open(os.environ.get("PROBE_JOURNAL", "/tmp/faust-rebalance-probe.jsonl"), "a")  # noqa: SIM115


def note(*entry: Any) -> None:
    JOURNAL.write(json.dumps(entry) + "\n")
    JOURNAL.flush()


class ReadOffsets(dict):  # type: ignore[type-arg]
    """Faust's read offsets (`Consumer._read_offset`, a record below one is dropped), noting each write
    for a partition between its revocation (when Faust forgets it) and the next assignment."""

    revoked: ClassVar[set[Any]] = set()

    def __missing__(self, tp: Any) -> None:
        return None

    def pop(self, tp: Any, *default: Any) -> Any:
        self.revoked.add(tp)
        return super().pop(tp, *default)

    def __setitem__(self, tp: Any, offset: Any) -> None:
        if tp in self.revoked:
            note("stale", tp.partition, offset)
        super().__setitem__(tp, offset)


READ = app.consumer._read_offset = ReadOffsets()  # type: ignore[attr-defined]  # before the drain loop binds it


@app.on_partitions_assigned.connect  # type: ignore[arg-type]
async def assigned(_app: Any, assigned: Any, **_kwargs: Any) -> None:
    mine = sorted(tp for tp in assigned if tp.topic == source.get_topic_name())
    note("assigned", app.consumer_generation_id, [tp.partition for tp in mine],
         {tp.partition: dict.get(READ, tp) for tp in mine})
    READ.revoked.clear()


@app.on_partitions_revoked.connect  # type: ignore[arg-type]
async def revoked(_app: Any, revoked: Any, **_kwargs: Any) -> None:
    topic = source.get_topic_name()
    note("revoked", app.consumer_generation_id, sorted(tp.partition for tp in revoked if tp.topic == topic))


@app.agent(source)
async def slow(stream: Any) -> None:
    async for events in stream.noack_take(8, within=0.1):
        for event in events:
            note("yield", app.consumer_generation_id, event.message.partition, event.message.offset)
        await asyncio.sleep(0.2)
        if ACK:
            for event in events:
                await stream.ack(event)
