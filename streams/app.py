"""`eventrouter worker`: run the engine the settings name. The engines build on streams/worker.py, which
imports neither of them."""

from __future__ import annotations

from streams.worker import WorkerSettings


def run_worker(settings: WorkerSettings) -> int:
    """Run until SIGTERM/SIGINT. Refuses to start on a bad config file."""
    if settings.engine == "faust":
        from streams.faust_engine import run_faust

        return run_faust(settings)
    from streams.kafka_engine import run_kafka

    return run_kafka(settings)
