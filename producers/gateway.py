"""`eventrouter gateway`: Segment's HTTP Tracking API on aiohttp, answering only after Kafka acknowledges.

A 200 means every accepted event of the request is durable in the raw topic (acks=all) and every
rejected one is durable in the invalid-events topic, with its reason; the rejected ones are also listed
in the response (`rejected: [{index, messageId, reason, message}]`). Kafka unreachable or too slow:
503 with Retry-After, which Segment's libraries retry (messageIds make the retry harmless).
Stateless: run several behind one load balancer, or `--processes N` on one port (SO_REUSEPORT).

Hostile clients: a writeKey in the Authorization header is checked before the body is read; the request
line and headers must arrive within `header_timeout` of the connection (or of the previous answer on a
kept-alive one: aiohttp's keep-alive timer, which also closes idle connections), and the body within
`body_timeout` (408, connection closed); refusals are logged once per reason per 10 s, with a count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from confluent_kafka import KafkaError, Message
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from producers.gateway_metrics import GatewayMetrics, Outages, RefusalLog
from producers.messages import iso, message_id
from producers.publisher import DeliveryError, Publisher, QueueFullError
from producers.tracking_api import (
    BATCH_PATHS,
    SINGLE_PATHS,
    Rejection,
    RequestError,
    batch_reply,
    dead_letter_bytes,
    header_write_key,
    parse_request,
    read_body,
)
from schemas import EventCodec, Topics, deadletter_codec
from schemas.config import load_config
from schemas.deadletters import dead_letter
from schemas.validation import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)
_SLACK = 4096  # gzip of incompressible data is a little larger than the data
_LINGER_S = 2.0  # at most this long reading (and dropping) the rest of a refused request's body


@dataclass(frozen=True)
class GatewaySettings:
    bootstrap: str
    write_keys: frozenset[str]
    topics: Topics = field(default_factory=Topics)
    limits: Limits = DEFAULT_LIMITS
    ack_timeout: float = 5.0  # under the 10 s HTTP timeout of Segment's Node and Go libraries: they get the 503
    producer_config: dict[str, Any] = field(default_factory=dict)
    follow_config: bool = False  # also accept the writeKeys of the newest config revision, as it changes
    # Segment's Node and Go libraries give up after 10 s: a request slower than that is no client of theirs
    header_timeout: float = 10.0  # request line and headers, from the connection or the previous answer
    body_timeout: float = 10.0    # the whole body, from the headers

    def __repr__(self) -> str:  # writeKeys are credentials: never in a repr or a log line
        return f"GatewaySettings(bootstrap={self.bootstrap!r}, write_keys=<{len(self.write_keys)} masked>)"


def write_keys_from_config(path: Path) -> frozenset[str]:
    """The writeKeys of the enabled pipelines of a config file; ConfigurationError lists its problems."""
    return load_config(path).write_keys()


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self._codec = EventCodec()
        self._deadletters = deadletter_codec()
        self._raw: Publisher | None = None
        self._invalid: Publisher | None = None
        self._keys = settings.write_keys  # swapped whole by the config watcher: one reference, no lock
        self._watcher: Any = None
        self.metrics = GatewayMetrics()
        self.outages = Outages(self.metrics, settings.ack_timeout)
        self.refusals = RefusalLog()

    def _is_known(self, key: str) -> bool:
        return key in self._keys

    def _take_revision(self, revision: Any, config: Any) -> None:
        self._keys = self.settings.write_keys | config.write_keys()
        log.info("config revision %s: %d writeKeys accepted", revision.number, len(self._keys))

    def app(self) -> web.Application:
        # We gunzip ourselves, bounded by the limit: aiohttp's own decompression is unbounded. aiohttp's
        # keep-alive timer runs from the connection until a request's headers are in, and from each answer
        # until the next: our header timeout. Lingering (reading the unread body of a refused request, so
        # the client sees the answer rather than a reset) is bounded too.
        app = web.Application(handler_args={"auto_decompress": False,
                                            "keepalive_timeout": self.settings.header_timeout,
                                            "lingering_time": _LINGER_S})
        app.router.add_get("/metrics", self.serve_metrics)
        app.router.add_post("/v1/{call}", self.handle)
        app.router.add_post("/{call}", self.handle)  # some clients post to the host root (e.g. /batch)
        app.router.add_get("/health", self.health)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._stop)
        return app

    async def _start(self, _app: web.Application) -> None:
        s = self.settings
        config = {"message.timeout.ms": max(int(s.ack_timeout * 1000) * 3, 30_000), **s.producer_config}
        self._raw = Publisher(s.bootstrap, s.topics.raw, config=config, on_full="drop", name="eventrouter-gateway")
        self._invalid = Publisher(s.bootstrap, s.topics.invalid, config=config, on_full="drop",
                                  name="eventrouter-gateway")
        self._raw.start()
        self._invalid.start()
        if s.follow_config:
            from schemas.runtime.revisions import ConfigStore, RevisionWatcher

            self._watcher = RevisionWatcher(ConfigStore(s.bootstrap, s.topics), self._take_revision)
            self._watcher.start()
        log.info("gateway started raw=%s invalid=%s writeKeys=%d", s.topics.raw, s.topics.invalid,
                 len(s.write_keys))

    async def _stop(self, _app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        if self._watcher is not None:
            self._watcher.stop()
        for publisher in (self._raw, self._invalid):
            if publisher is not None:
                pending = await loop.run_in_executor(None, publisher.close, 30.0)
                if pending:
                    log.error("gateway stopped with %d events unacknowledged topic=%s", pending, publisher.topic)

    async def health(self, _request: web.Request) -> web.Response:
        if self._raw is None or self._raw.brokers_down:
            return web.json_response({"status": "kafka_unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def serve_metrics(self, _request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        response = await self._answer(request)
        self.metrics.requests.labels(str(response.status)).inc()
        return response

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        call = request.match_info["call"]
        if call not in SINGLE_PATHS and call not in BATCH_PATHS:
            return web.json_response({"success": False, "code": "not_found", "message": f"no endpoint /v1/{call}"},
                                     status=404)
        limits = self.settings.limits
        limit = limits.batch_bytes if call in BATCH_PATHS else limits.event_bytes
        try:
            auth_user = header_write_key(request.headers.get("Authorization"), self._is_known)
            try:
                async with asyncio.timeout(self.settings.body_timeout):
                    raw = await _read_capped(request, limit + _SLACK)
            except TimeoutError:
                return await self._timed_out(request, call)
            body = read_body(raw, request.headers.get("Content-Encoding"), limit)
            parsed = parse_request(call, body, auth_user, is_known=self._is_known,
                                   received_at=iso(dt.datetime.now(dt.UTC)), new_id=message_id, limits=limits)
        except RequestError as exc:
            self.refusals.refused(exc.code, exc.status, f"/v1/{call}", request.remote)
            self.metrics.rejected.labels(exc.code).inc()
            return web.json_response(exc.body(), status=exc.status)
        acks = _Acks(asyncio.get_running_loop(), self.outages)
        try:
            async with asyncio.timeout(self.settings.ack_timeout):
                await self._publish(call, parsed.accepted, parsed.rejected, acks)
        except (TimeoutError, DeliveryError, QueueFullError) as exc:
            # What is still queued may be acknowledged later (the client's retry carries the same messageIds,
            # which the worker's dedup drops) or fail: Outages counts both, and logs per episode, not per request.
            reason = f"no acknowledgement within {self.settings.ack_timeout:g} s" if isinstance(exc, TimeoutError) \
                else str(exc)
            self.outages.answered_503(acks.abandon(), reason)
            return web.json_response({"success": False, "code": "kafka_unavailable",
                                      "message": "events not acknowledged by Kafka; retry"},
                                     status=503, headers={"Retry-After": "5"})
        self.outages.answered_200()
        self.metrics.accepted.inc(len(parsed.accepted))
        for rejection in parsed.rejected:
            self.metrics.rejected.labels(rejection.reason).inc()
        reply = batch_reply(parsed) if call in BATCH_PATHS else {"success": True}
        return web.Response(body=orjson.dumps(reply), content_type="application/json")

    async def _timed_out(self, request: web.Request, call: str) -> web.StreamResponse:
        """408 for a body slower than body_timeout, and the connection closed at once (not kept alive,
        and not lingered on: the client is the slow one)."""
        self.refusals.refused("timeout", 408, f"/v1/{call}", request.remote)
        self.metrics.rejected.labels("timeout").inc()
        response = web.json_response({"success": False, "code": "timeout", "message": "the body did not arrive "
                                      f"within {self.settings.body_timeout:g} s"}, status=408)
        response.force_close()
        await response.prepare(request)
        await response.write_eof()
        if request.transport is not None:
            request.transport.close()
        return response

    async def _publish(self, call: str, accepted: list[dict[str, Any]], rejected: list[Rejection],
                       acks: _Acks) -> None:
        assert self._raw is not None and self._invalid is not None, "gateway not started"
        raw_done, invalid_done = acks.callback(self._raw), acks.callback(self._invalid)
        expected = len(accepted) + len(rejected)
        acks.pending = expected  # before the first publish: its report may come at once, on another thread
        queued = 0
        try:
            for message in accepted:
                self._raw.publish(self._codec.encode(message), message.get("userId") or message.get("anonymousId"),
                                  callback=raw_done)
                queued += 1
            for rejection in rejected:
                record = dead_letter(reason=rejection.reason, message=rejection.message, stage="gateway",
                                     original=dead_letter_bytes(rejection.event), source_topic=f"http:/v1/{call}",
                                     source_offset=rejection.index, message_id=rejection.report()["messageId"])
                self._invalid.publish(self._deadletters.encode(record), None, callback=invalid_done)
                queued += 1
        except BaseException:
            acks.not_queued(expected - queued)  # refused (buffer full, topic missing): no report will come
            raise
        await acks.all_acknowledged()


class _Acks:
    """Counts one request's delivery reports and wakes its handler once, when all are in: one
    cross-thread wake-up per request, not one per event. Once its 503 is out (`abandon()`), the reports
    still to come go to the Outages ledger instead."""

    def __init__(self, loop: asyncio.AbstractEventLoop, outages: Outages) -> None:
        self.loop = loop
        self.outages = outages
        self.future: asyncio.Future[None] = loop.create_future()
        self.pending = 0
        self.abandoned = False
        self.error: str | None = None
        self._lock = threading.Lock()  # reports arrive on the loop's thread and on the poller's

    def not_queued(self, count: int) -> None:
        with self._lock:
            self.pending -= count

    def callback(self, publisher: Publisher) -> Callable[[KafkaError | None, Message], None]:
        def delivered(err: KafkaError | None, _msg: Message) -> None:
            publisher.settle(err)
            with self._lock:
                if err is not None and self.error is None:
                    self.error = err.str()
                self.pending -= 1
                late = self.abandoned
                done = self.pending == 0 and not late
            if late:
                self.outages.settled_late(err is None)
            elif err is not None:
                self.outages.failed_in_time()
            if done:
                self.loop.call_soon_threadsafe(self._finish)
        return delivered

    def abandon(self) -> int:
        """The request is answered without waiting further: how many of its records are still unreported."""
        with self._lock:
            self.abandoned = True
            return self.pending

    async def all_acknowledged(self) -> None:
        if self.pending == 0:  # nothing was sent
            self._finish()
        await self.future

    def _finish(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(DeliveryError(self.error))


async def _read_capped(request: web.Request, cap: int) -> bytes:
    if request.content_length is not None and request.content_length > cap:
        raise RequestError(400, "too_large", f"the body is {request.content_length} bytes, over the limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise RequestError(400, "too_large", "the body is over the limit")
        chunks.append(chunk)


def serve(settings: GatewaySettings, host: str, port: int, processes: int = 1) -> int:
    """Run the gateway until SIGTERM/SIGINT; with processes > 1, that many share the port."""
    children: list[int] = []
    for _ in range(processes - 1):
        pid = os.fork()
        if pid == 0:
            children.clear()
            break
        children.append(pid)
    print(f"gateway pid {os.getpid()} listening on http://{host}:{port}", file=sys.stderr, flush=True)
    web.run_app(Gateway(settings).app(), host=host, port=port, reuse_port=processes > 1, print=None,
                access_log=None, shutdown_timeout=30)
    for child in children:  # the parent got SIGTERM/SIGINT and has drained: stop the others the same way
        os.kill(child, signal.SIGTERM)
        os.waitpid(child, 0)
    return 0
