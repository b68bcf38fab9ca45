"""The Python server SDK: analytics-python's interface, publishing Avro straight to the raw Kafka topic.

    from producers import Analytics
    analytics = Analytics("wk_live_123", bootstrap_servers="127.0.0.1:9092", on_error=report)
    analytics.track("user-1", "Order Completed", {"revenue": 42.0})
    analytics.flush()

Every call is validated before anything is queued (ValidationError names the field and the limit).
An accepted event is then acknowledged by Kafka or reported: `on_error(error, [message])` and the
`failed` counter (analytics-python's callback signature: an error and a list of messages).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, Message

from producers.messages import Composer
from producers.publisher import DeliveryError, OnFull, Publisher, QueueFullError
from schemas import EventCodec, Topics
from schemas.validation import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

OnError = Callable[[Exception, list[dict[str, Any]]], None]
# analytics-python options that mean nothing when publishing to Kafka; accepted so that code written
# for it runs unchanged.
_HTTP_ONLY_OPTIONS = frozenset({"host", "gzip", "max_retries", "proxies", "thread", "upload_size", "upload_interval",
                                "log_handler", "oauth_client_id", "oauth_client_key", "oauth_key_id",
                                "oauth_auth_server", "oauth_scope", "max_total_backoff_duration",
                                "max_rate_limit_duration"})


class Analytics:
    """A Segment-compatible client. Thread-safe; fork-safe; flushes itself at interpreter exit."""

    def __init__(self, write_key: str | None = None, bootstrap_servers: str | None = None, *,
                 topic: str | None = None, on_error: OnError | None = None, debug: bool = False,
                 send: bool = True, sync_mode: bool = False, timeout: float = 15.0,
                 max_queue_size: int = 100_000, on_full: OnFull = "block", block_timeout: float = 5.0,
                 limits: Limits = DEFAULT_LIMITS, producer_config: Mapping[str, Any] | None = None,
                 **http_options: Any) -> None:
        unknown = set(http_options) - _HTTP_ONLY_OPTIONS
        if unknown:
            raise TypeError(f"Analytics() got unexpected options: {', '.join(sorted(unknown))}")
        if write_key is not None and not isinstance(write_key, str):
            raise TypeError("write_key must be a string")
        self.on_error = on_error
        self.send = send
        self.sync_mode = sync_mode
        self.timeout = timeout
        self.limits = limits
        if debug:
            log.setLevel(logging.DEBUG)
        bootstrap = bootstrap_servers or os.environ.get("EVENTROUTER_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        config = {"queue.buffering.max.messages": max_queue_size, **(producer_config or {})}
        self._codec = EventCodec()
        self._composer = Composer(self._codec, write_key, limits)
        options: dict[str, Any] = {"on_delivery": self._delivered, "config": config, "on_full": on_full,
                                   "block_timeout": block_timeout, "name": "eventrouter-python"}
        # Fire-and-forget calls hear back only about failures; calls that wait for their acknowledgement
        # (sync_mode, the awaitable ones) use a second producer, made on first use, that reports each one.
        # Fire-and-forget calls linger 25 ms: at 5k events/s that took 3 us per event off this process and
        # ~10 off the broker (a produce request per partition per linger: 240 a second, not 600), against
        # 10 ms for the calls that wait. Segment's own libraries gather for 500 ms.
        self._publisher = Publisher(bootstrap, topic or Topics().raw, errors_only=True,
                                    **{**options, "config": {"linger.ms": 25, **config}})
        self._acking = Publisher(bootstrap, topic or Topics().raw, **options)

    def __enter__(self) -> Analytics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Analytics(topic={self._publisher.topic!r}, write_key=***)"

    # -- the Segment calls, with analytics-python's argument names and order -------------------------
    def track(self, user_id: Any = None, event: str | None = None, properties: Mapping[str, Any] | None = None,
              context: Mapping[str, Any] | None = None, timestamp: Any = None, anonymous_id: Any = None,
              integrations: Mapping[str, Any] | None = None, message_id: Any = None) -> tuple[bool, dict[str, Any]]:
        return self._enqueue(self._composer.compose("track", user_id, anonymous_id, event=event, properties=properties,
                                                    context=context, timestamp=timestamp, integrations=integrations,
                                                    message_id=message_id))

    def identify(self, user_id: Any = None, traits: Mapping[str, Any] | None = None,
                 context: Mapping[str, Any] | None = None, timestamp: Any = None, anonymous_id: Any = None,
                 integrations: Mapping[str, Any] | None = None,
                 message_id: Any = None) -> tuple[bool, dict[str, Any]]:
        return self._enqueue(self._composer.compose("identify", user_id, anonymous_id, traits=traits,
                                                    context=context, timestamp=timestamp, integrations=integrations,
                                                    message_id=message_id))

    def group(self, user_id: Any = None, group_id: Any = None, traits: Mapping[str, Any] | None = None,
              context: Mapping[str, Any] | None = None, timestamp: Any = None, anonymous_id: Any = None,
              integrations: Mapping[str, Any] | None = None, message_id: Any = None) -> tuple[bool, dict[str, Any]]:
        return self._enqueue(self._composer.compose("group", user_id, anonymous_id, group_id=group_id, traits=traits,
                                                    context=context, timestamp=timestamp, integrations=integrations,
                                                    message_id=message_id))

    def alias(self, previous_id: Any = None, user_id: Any = None, context: Mapping[str, Any] | None = None,
              timestamp: Any = None, integrations: Mapping[str, Any] | None = None,
              message_id: Any = None) -> tuple[bool, dict[str, Any]]:
        return self._enqueue(self._composer.compose("alias", user_id, previous_id=previous_id, context=context,
                                                    timestamp=timestamp, integrations=integrations,
                                                    message_id=message_id))

    def page(self, user_id: Any = None, category: str | None = None, name: str | None = None,
             properties: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
             timestamp: Any = None, anonymous_id: Any = None, integrations: Mapping[str, Any] | None = None,
             message_id: Any = None) -> tuple[bool, dict[str, Any]]:
        return self._enqueue(self._composer.compose("page", user_id, anonymous_id, category=category, name=name,
                                                    properties=properties, context=context, timestamp=timestamp,
                                                    integrations=integrations, message_id=message_id))

    def screen(self, user_id: Any = None, category: str | None = None, name: str | None = None,
               properties: Mapping[str, Any] | None = None, context: Mapping[str, Any] | None = None,
               timestamp: Any = None, anonymous_id: Any = None, integrations: Mapping[str, Any] | None = None,
               message_id: Any = None) -> tuple[bool, dict[str, Any]]:
        return self._enqueue(self._composer.compose("screen", user_id, anonymous_id, category=category, name=name,
                                                    properties=properties, context=context, timestamp=timestamp,
                                                    integrations=integrations, message_id=message_id))

    # -- awaitable variants: resolve when Kafka has acknowledged the event, raise DeliveryError if not ---
    async def atrack(self, user_id: Any = None, event: str | None = None, **fields: Any) -> dict[str, Any]:
        return await self._asend("track", user_id=user_id, event=event, **fields)

    async def aidentify(self, user_id: Any = None, traits: Mapping[str, Any] | None = None,
                        **fields: Any) -> dict[str, Any]:
        return await self._asend("identify", user_id=user_id, traits=traits, **fields)

    async def agroup(self, user_id: Any = None, group_id: Any = None, **fields: Any) -> dict[str, Any]:
        return await self._asend("group", user_id=user_id, group_id=group_id, **fields)

    async def aalias(self, previous_id: Any = None, user_id: Any = None, **fields: Any) -> dict[str, Any]:
        return await self._asend("alias", previous_id=previous_id, user_id=user_id, **fields)

    async def apage(self, user_id: Any = None, category: str | None = None, name: str | None = None,
                    **fields: Any) -> dict[str, Any]:
        return await self._asend("page", user_id=user_id, category=category, name=name, **fields)

    async def ascreen(self, user_id: Any = None, category: str | None = None, name: str | None = None,
                      **fields: Any) -> dict[str, Any]:
        return await self._asend("screen", user_id=user_id, category=category, name=name, **fields)

    # -- lifecycle -------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> int:
        """Block until every queued event is acknowledged or reported; return how many are still pending
        (0 unless `timeout` ran out first)."""
        pending = self._publisher.flush(timeout)
        return pending + self._acking.flush(timeout)

    def close(self, timeout: float | None = None) -> int:
        """Flush and stop. Also runs at interpreter exit and when a forked child exits."""
        pending = self._publisher.close(timeout)
        return pending + self._acking.close(timeout)

    join = shutdown = close  # analytics-python's names

    def stats(self) -> dict[str, int]:
        a, b = self._publisher.snapshot(), self._acking.snapshot()
        return {"queued": a.queued + b.queued, "acked": a.acked + b.acked, "failed": a.failed + b.failed,
                "dropped": a.dropped + b.dropped, "rejected": self._composer.rejected,
                "in_flight": self._publisher.in_flight() + self._acking.in_flight()}

    # -- internals -------------------------------------------------------------------------------------
    @property
    def write_key(self) -> str | None:
        return self._composer.write_key

    @property
    def rejected(self) -> int:
        """Calls refused with ValidationError."""
        return self._composer.rejected

    def _enqueue(self, prepared: tuple[dict[str, Any], bytes, str]) -> tuple[bool, dict[str, Any]]:
        message, value, key = prepared
        if not self.send:
            return True, message
        if self.sync_mode:
            self._send_and_wait(message, value, key)
            return True, message
        try:
            self._publisher.publish(value, key)
        except QueueFullError as exc:
            if self._publisher.on_full != "drop":
                raise
            self._report(exc, message)
            return False, message
        return True, message

    def _send_and_wait(self, message: dict[str, Any], value: bytes, key: str) -> None:
        done = threading.Event()
        outcome: list[KafkaError | None] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self._acking.settle(err)
            outcome.append(err)
            done.set()

        self._acking.publish(value, key, callback=delivered)
        if not done.wait(self.timeout):
            raise DeliveryError(f"no acknowledgement from Kafka within {self.timeout}s "
                                f"(messageId {message['messageId']}; it may still be delivered)")
        if outcome[0] is not None:
            raise DeliveryError(f"Kafka refused messageId {message['messageId']}: {outcome[0].str()}")

    async def _asend(self, call: str, **fields: Any) -> dict[str, Any]:
        message, value, key = self._composer.compose(call, **fields)
        if not self.send:
            return message
        loop = asyncio.get_running_loop()
        future: asyncio.Future[KafkaError | None] = loop.create_future()

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            self._acking.settle(err)
            loop.call_soon_threadsafe(_resolve, future, err)

        self._acking.publish(value, key, callback=delivered)
        err = await future
        if err is not None:
            raise DeliveryError(f"Kafka refused messageId {message['messageId']}: {err.str()}")
        return message

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return
        try:
            message = self._codec.decode(msg.value())
        except Exception:  # noqa: BLE001 - never let a report fail: report what we have
            message = {"key": msg.key()}
        self._report(DeliveryError(f"not acknowledged by Kafka: {err.str()}"), message)

    def _report(self, error: Exception, message: dict[str, Any]) -> None:
        log.error("event not delivered messageId=%s: %s", message.get("messageId"), error)
        if self.on_error is not None:
            try:
                self.on_error(error, [message])
            except Exception:
                log.exception("on_error callback raised")


def _resolve(future: asyncio.Future[KafkaError | None], err: KafkaError | None) -> None:
    if not future.done():
        future.set_result(err)
