"""Faust's aiokafka transport, with the group coordinator's errors read before every fetch.

aiokafka's group coordinator runs in a background task (joins, heartbeats, commits). When that task meets
a Kafka error it cannot retry on its own, it parks: it hands the error to the application and waits until
the application reads it (`GroupCoordinator._push_error_to_user`), which aiokafka's own
`AIOKafkaConsumer.getmany` does before each fetch (`self._coordinator.check_errors()`). faust-streaming
0.15.3 fetches through aiokafka's fetcher directly (`AIOKafkaConsumerThread._fetch_records` in
faust/transport/drivers/aiokafka.py) and never reads it, so the coordinator stays parked for good: no
heartbeat, no rejoin, no revocation and no assignment, and nothing in the log. Records keep coming from
the partitions it held, so the member looks alive while the group goes on without it; after a peer's
death its partitions have no owner. Upstream: aio-libs/aiokafka#1154 (a consumer stuck after a
rebalance, with no public health signal) and aio-libs/aiokafka#294 (coordinator errors reach the
application only through getone/getmany).

Here the consumer thread reads the coordinator's errors before each fetch, as getmany does: a parked
coordinator is released and asked to join the group again, and the error is reported to `on_error`; a
coordinator task that ended for good is reported as such (the worker then stops to be started afresh).
tests/integration/test_faust_coordinator.py shows both against the real broker: a heartbeat that fails
once leaves Faust's consumer holding its partitions while the group gives them to another member, and
leaves ours rejoining with disjoint assignments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (the error, whether the coordinator's task has ended for good); called in the consumer's thread
OnError = Callable[[BaseException, bool], None]


def read_errors(coordinator: Any) -> tuple[BaseException, bool] | None:
    """What `check_errors()` raises, if anything, and whether the coordinator's task ended. Reading it
    releases a coordinator parked on that error."""
    try:
        coordinator.check_errors()
    except Exception as exc:  # noqa: BLE001 - any error it held: reported by the caller, never raised here
        return exc, bool(coordinator._coordination_task.done())
    return None


def checked_thread(on_error: OnError) -> type[Any]:
    """Faust's aiokafka consumer thread, reading the coordinator's errors before each fetch and reporting
    each to `on_error`."""
    from faust.transport.drivers import aiokafka as driver

    class CheckedConsumerThread(driver.AIOKafkaConsumerThread):
        async def _fetch_records(self, consumer: Any, active_partitions: Any, timeout: float | None = None,
                                 max_records: int | None = None) -> Any:
            error = read_errors(consumer._coordinator)
            if error is not None:
                on_error(*error)
                if not error[1]:  # released; without a rejoin it would meet the same ended heartbeat task again
                    consumer._coordinator.request_rejoin()
            return await driver.AIOKafkaConsumerThread._fetch_records(self, consumer, active_partitions,
                                                                      timeout=timeout, max_records=max_records)

    return CheckedConsumerThread


def checked_transport(on_error: OnError) -> type[Any]:
    """A Faust transport class (aiokafka) whose consumers fetch through `checked_thread(on_error)`."""
    from faust.transport.drivers import aiokafka as driver

    thread = checked_thread(on_error)

    class CheckedConsumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return thread(self, loop=self.loop, beacon=self.beacon)

    class CheckedTransport(driver.Transport):
        Consumer = CheckedConsumer

    return CheckedTransport
