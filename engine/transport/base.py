"""What every transport offers the pipeline, and the logic they share.

Intake publishes to `wasla.in`, the transform consumes its shards and publishes to `wasla.out`,
delivery consumes a destination's shards and publishes to the retry and dead queues; the runtime
declares the topology, drains the backlog and asks how deep the queues are. A transport
implements the few methods that touch its broker (`_put`, `declare`, `consume` …); routing
keys, headers, batching limits and the busy count live here once. Callers decide by
`capabilities`, never by the URL's scheme.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from kombu import Exchange, Queue

from engine.config import BrokerSettings
from engine.transport.topology import DEAD, IN, OUT, RETRY, Route, Topology

__all__ = ["Capabilities", "Delivery", "Handler", "Transport", "hold", "received_epoch"]


@dataclass(frozen=True)
class Capabilities:
    """What a transport guarantees, for the callers that depend on it.

    Args:
        in_process: the queues live in this process: only its own roles see them, they are lost on
            exit (the journal re-enqueues them at start), and nothing is redelivered from elsewhere.
        durable_publish: `publish_*` returns once the broker has confirmed the message durable, so
            intake may answer AA on it; without it, durability comes from the journal alone.
    """

    in_process: bool
    durable_publish: bool


@dataclass
class Delivery:
    """One message taken from a queue; call exactly one of ack, reject or requeue."""

    body: bytes
    headers: dict[str, Any]
    _message: Any
    settled: bool = False  # ack, reject or requeue was called: a handler retrying its batch skips it

    def ack(self) -> None:
        self._message.ack()
        self.settled = True

    def reject(self) -> None:
        """Dead-letter it (to wasla.dead.*, through the queue's dead-letter exchange)."""
        self._message.reject(requeue=False)
        self.settled = True

    def requeue(self) -> None:
        self._message.requeue()
        self.settled = True

    def keepalive(self) -> None:
        """Heartbeat the consumer's connection while a handler holds its batch (a paused destination)."""
        with contextlib.suppress(Exception):  # an in-process queue has no connection; a dead one is found later
            self._message.channel.connection.heartbeat_tick()


Handler = Callable[[list[Delivery]], None]


def hold(seconds: float, stop: threading.Event, keepalive: Delivery | None) -> None:
    """Wait up to `seconds` (less if `stop` is set), heartbeating the consumer's connection every 5 s:
    a handler waiting out a fault holds its batch unacknowledged meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0 and not stop.is_set():
        stop.wait(min(left, 5.0))
        if keepalive is not None:
            keepalive.keepalive()


def received_epoch(headers: dict[str, Any], default: float) -> float:
    """When intake received the message (the `received_at` header), as epoch seconds; `default` if the
    header is missing or unreadable."""
    try:
        return datetime.fromisoformat(str(headers["received_at"])).timestamp()
    except (KeyError, ValueError):
        return default


class Transport(ABC):
    """The pipeline's queues on one broker: publishing to the topology's exchanges, consuming its
    shards in batches, and counting the handlers running (a graceful stop waits for them).

    A subclass declares its `capabilities` and its default batch linger, and implements `_put`,
    `_put_many`, `declare`, `consume`, `backlog`, `depths`, `purge` and `close`.
    """

    capabilities: ClassVar[Capabilities]
    linger_ms: ClassVar[float]  # a batch's default linger (`batch_linger_ms` unset), each broker its own

    def __init__(self, settings: BrokerSettings, routes: Iterable[Route] = ()) -> None:
        self.settings = settings
        self.url = settings.url
        self.routes = tuple(routes)
        self.topology = self._topology()
        self._busy = 0  # handlers running now: a graceful stop waits for them (engine.runtime)
        self._busy_lock = threading.Lock()

    def _topology(self) -> Topology:
        return Topology(self.settings.shards, self.routes)

    # -- topology ------------------------------------------------------------------------------
    def transform_queues(self) -> list[Queue]:
        return self.topology.transform_queues()

    def deliver_queues(self, destination: str) -> list[Queue]:
        return self.topology.deliver_queues(destination)

    def retry_queues(self, destination: str) -> list[Queue]:
        return self.topology.retry_queues(destination)

    def dead_queues(self) -> list[Queue]:
        return self.topology.dead_queues()

    def all_queues(self) -> list[Queue]:
        return self.topology.all_queues()

    def shard_of(self, patient_key: str, fallback: str) -> int:
        return self.topology.shard_of(patient_key, fallback)

    @abstractmethod
    def declare(self) -> None:
        """Declare every exchange, queue and binding (idempotent; every role does it at start)."""

    @abstractmethod
    def backlog(self) -> int:
        """Messages this process holds in its queues (0 where the broker keeps them)."""

    @abstractmethod
    def depths(self) -> dict[str, int]:
        """Messages ready in each queue of the topology."""

    @abstractmethod
    def purge(self) -> None:
        """Empty every queue of the topology (tests and benchmarks start from nothing)."""

    # -- publishing ----------------------------------------------------------------------------
    @abstractmethod
    def _put(self, exchange: Exchange, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        """Publish one persistent message; raise `BrokerError` if the broker did not take it."""

    @abstractmethod
    def _put_many(self, exchange: Exchange, items: list[tuple[bytes, str, dict[str, Any]]]) -> None:
        """Publish (body, routing key, headers) triples; raise `BrokerError` if any was not taken."""

    def publish_in(self, body: bytes, *, message_id: str, channel: str, patient_key: str,
                   headers: dict[str, Any]) -> None:
        self._put(IN, self.topology.in_key(patient_key, message_id), body,
                  {"message_id": message_id, "channel": channel, "patient_key": patient_key, **headers})

    def _out(self, body: bytes, message_id: str, channel: str, message_type: str, patient_key: str,
             headers: dict[str, Any]) -> tuple[bytes, str, dict[str, Any]]:
        key = self.topology.out_key(channel, message_type, patient_key, message_id)
        return body, key, {"message_id": message_id, "channel": channel, "patient_key": patient_key,
                           "message_type": message_type, **headers}

    def publish_out(self, body: bytes, *, message_id: str, channel: str, message_type: str, patient_key: str,
                    headers: dict[str, Any]) -> None:
        body, key, h = self._out(body, message_id, channel, message_type, patient_key, headers)
        self._put(OUT, key, body, h)

    def publish_out_many(self, items: list[tuple[bytes, str, str, str, str, dict[str, Any]]]) -> None:
        """`publish_out` for a batch of (body, message id, channel, type, patient key, headers): on
        RabbitMQ all are published, then their confirms awaited together (one round trip, not one per
        message: a kombu confirmed publish waits ~0.6 ms each)."""
        self._put_many(OUT, [self._out(*item) for item in items])

    def publish_retry(self, body: bytes, *, destination: str, level: int, patient_key: str, message_id: str,
                      headers: dict[str, Any]) -> None:
        """Send a message to wait in retry round `level`'s delay queue; it comes back to its own shard."""
        self._put(RETRY, self.topology.retry_key(destination, level, patient_key, message_id), body, headers)

    def publish_dead(self, body: bytes, *, destination: str, headers: dict[str, Any]) -> None:
        """Put a message in `wasla.dead.<destination>` (one that was not taken from a queue: no reject)."""
        self._put(DEAD, destination, body, headers)

    @abstractmethod
    def close(self) -> None:
        """Release this thread's publishing connection, if any."""

    # -- consuming -----------------------------------------------------------------------------
    @abstractmethod
    def consume(self, queues: list[Queue], handler: Handler, stop: threading.Event, *, name: str,
                max_batch: int | None = None) -> None:
        """Run `handler` on batches of messages until `stop` is set; reconnect with backoff on broker loss.

        A batch starts with the first message and takes what else arrives within the linger time
        (`batch_linger_ms`), up to `max_batch` (never more than the prefetch), as Benthos and Vector
        batch: under load the handler pays one journal commit and one fsync for many messages, and
        a lone message waits at most the linger time for company.
        """

    def _batching(self, max_batch: int | None) -> tuple[int, float]:
        """A batch's size limit and its linger in seconds."""
        limit = max(1, min(max_batch or self.settings.batch_max, self.settings.prefetch))
        linger_ms = self.settings.batch_linger_ms
        return limit, (self.linger_ms if linger_ms is None else linger_ms) / 1000.0

    def _run(self, handler: Handler, batch: list[Delivery]) -> None:
        with self._busy_lock:
            self._busy += 1
        try:
            handler(batch)
        finally:
            with self._busy_lock:
                self._busy -= 1

    def in_flight(self) -> int:
        """Batches being handled right now in this process."""
        return self._busy
