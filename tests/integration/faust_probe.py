"""A minimal Faust app for the Kafka-version compatibility test: copies raw bytes from one topic to another.

Run as a subprocess: python -m faust -A tests.integration.faust_probe worker
with PROBE_BOOTSTRAP, PROBE_IN, PROBE_OUT and PROBE_DATADIR in the environment.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import faust

app = faust.App(
    f"probe-{os.environ.get('PROBE_IN', 'x')}",
    broker=f"kafka://{os.environ.get('PROBE_BOOTSTRAP', '127.0.0.1:9092')}",
    datadir=os.environ.get("PROBE_DATADIR", "/tmp/faust-probe"),
    web_enabled=False,
    topic_replication_factor=1,
    topic_partitions=1,
)
source = app.topic(os.environ.get("PROBE_IN", "in"), value_type=bytes, value_serializer="raw")
sink = app.topic(os.environ.get("PROBE_OUT", "out"), value_type=bytes, value_serializer="raw")


@app.agent(source)
async def copy(stream: faust.StreamT[bytes]) -> AsyncIterator[bytes]:
    async for value in stream:
        await sink.send(value=value)
        yield value
