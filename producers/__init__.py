"""What publishes events: the Python SDK, the HTTP tracking gateway, file import.

Leaving analytics-python is a one-line change:

    import producers as analytics            # was: import segment.analytics as analytics
    analytics.write_key = "wk_live_123"
    analytics.bootstrap_servers = "127.0.0.1:9092"
    analytics.track("user-1", "Signed Up", {"plan": "pro"})

or `from producers import Analytics` for an explicit client.
"""

from __future__ import annotations

from schemas.native import use_compiled

use_compiled(__name__, __path__)  # the SDK's composer (producers/messages.py), compiled when built

from typing import Any

from producers.analytics import Analytics, OnError
from producers.publisher import DeliveryError, QueueFullError
from schemas.validation import Limits, ValidationError

# Module-level settings, read when the default client is first made (as analytics-python does).
write_key: str | None = None
bootstrap_servers: str | None = None
topic: str | None = None
on_error: OnError | None = None
debug: bool = False
send: bool = True
sync_mode: bool = False
default_client: Analytics | None = None


def _client() -> Analytics:
    global default_client  # analytics-python's module-level client, by design
    if default_client is None:
        default_client = Analytics(write_key, bootstrap_servers, topic=topic, on_error=on_error, debug=debug,
                                   send=send, sync_mode=sync_mode)
    return default_client


def track(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    return _client().track(*args, **kwargs)


def identify(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    return _client().identify(*args, **kwargs)


def group(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    return _client().group(*args, **kwargs)


def alias(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    return _client().alias(*args, **kwargs)


def page(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    return _client().page(*args, **kwargs)


def screen(*args: Any, **kwargs: Any) -> tuple[bool, dict[str, Any]]:
    return _client().screen(*args, **kwargs)


def flush(timeout: float | None = None) -> int:
    return _client().flush(timeout)


def shutdown() -> int:
    return _client().close()


join = shutdown

__all__ = [
    "Analytics",
    "DeliveryError",
    "Limits",
    "QueueFullError",
    "ValidationError",
    "alias",
    "flush",
    "group",
    "identify",
    "join",
    "page",
    "screen",
    "shutdown",
    "track",
]
