"""The `amqp://` transport: the pipeline's queues on RabbitMQ, through kombu and py-amqp.

Queues are durable, dead-lettered to `wasla.dead`, and single-active-consumer so each shard
keeps its patients' order; consuming them is `engine.transport.amqp_consume` (a consumer leaves
by closing its channel, never by cancelling, so what it held goes to the next one first).
Publishes are persistent and confirmed before `publish_*` returns: that is what lets intake
answer AA. With `queue_type: quorum` every queue is replicated on the cluster
(`RabbitTopology.replicated`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from typing import Any, ClassVar

from amqp.exceptions import MessageNacked
from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError

from engine.config import BrokerSettings
from engine.errors import BrokerError
from engine.transport.amqp_consume import ShardConsumer
from engine.transport.base import Capabilities, Handler, Transport
from engine.transport.topology import EXCHANGES, Route, Topology

__all__ = ["AMQPTransport", "RabbitTopology"]


class RabbitTopology(Topology):
    """The topology with RabbitMQ's queue arguments: single-active consumer on every shard queue
    (one consumer at a time keeps a shard's order) and, with `queue_type: quorum`, replication."""

    def __init__(self, shards: int, routes: Iterable[Route], queue_type: str) -> None:
        super().__init__(shards, routes)
        self.queue_type = queue_type

    def shard_arguments(self, args: dict[str, Any]) -> dict[str, Any]:
        return {**args, "x-single-active-consumer": True}

    def replicated(self, args: dict[str, Any]) -> dict[str, Any]:
        """With `queue_type: quorum`, a queue lives on a majority of the cluster's nodes (Raft), and
        what it dead-letters (a retry's expiry, a rejected message) moves at least once, never dropped:
        RabbitMQ requires `reject-publish` overflow for that (a full queue refuses, the publisher's
        confirm fails, and intake does not ACK)."""
        if self.queue_type != "quorum":
            return args
        extra = {"x-queue-type": "quorum"}
        if "x-dead-letter-exchange" in args:
            extra |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        return {**args, **extra}


class AMQPTransport(Transport):
    """The pipeline's queues on RabbitMQ: declares the topology, publishes with confirms (one
    producer connection per thread, one reconnect on failure, `BrokerError` when unconfirmed), and
    consumes shards through a `ShardConsumer` per consuming thread (reconnect, fair sharing between
    processes, an idle watchdog)."""

    capabilities: ClassVar[Capabilities] = Capabilities(in_process=False, durable_publish=True)
    linger_ms: ClassVar[float] = 20.0  # a batch pays a confirmed commit: worth waiting longer for company
    topology: RabbitTopology

    def __init__(self, settings: BrokerSettings, routes: Iterable[Route] = ()) -> None:
        super().__init__(settings, routes)
        self._local = threading.local()
        self.connection_errors: tuple[type[BaseException], ...] = (OperationalError, OSError,
                                                                   *Connection(self.url).connection_errors)
        self.channel_errors: tuple[type[BaseException], ...] = tuple(Connection(self.url).channel_errors)

    def _topology(self) -> RabbitTopology:
        return RabbitTopology(self.settings.shards, self.routes, self.settings.queue_type)

    def declare(self) -> None:
        """Declare every exchange, queue and binding (idempotent; every role does it at start); a queue
        that exists with other arguments (its type changed) is a `BrokerError` saying what to do."""
        with self.connection() as conn:
            conn.ensure_connection(max_retries=5, interval_start=0.5, interval_step=1, interval_max=3)
            channel = conn.channel()
            for ex in EXCHANGES:
                ex(channel).declare()
            for q in self.all_queues():
                try:
                    q(channel).declare()
                except self.channel_errors as exc:  # PRECONDITION_FAILED: it exists with other arguments
                    raise BrokerError(
                        f"queue {q.name} exists with other arguments than broker.queue_type="
                        f"{self.settings.queue_type} asks ({exc}); a queue's type cannot change in place:"
                        f" stop the engine, let the queue drain, delete it (rabbitmqctl delete_queue {q.name}),"
                        " start again") from exc

    # -- connections ---------------------------------------------------------------------------
    def connection(self) -> Connection:
        """A kombu connection to RabbitMQ, publishes confirmed."""
        return Connection(self.url, transport_options={"confirm_publish": True}, heartbeat=30, connect_timeout=10)

    def backlog(self) -> int:
        """0: RabbitMQ keeps its queues on disk and applies its own flow control."""
        return 0

    def depths(self) -> dict[str, int]:
        """Messages ready in each queue (a passive declare per queue; the ones that answered, if the
        connection fails)."""
        names = [q.name for q in self.all_queues()]
        found: dict[str, int] = {}
        try:
            with self.connection() as conn:
                ch = conn.channel()
                for n in names:
                    with contextlib.suppress(*self.channel_errors):
                        found[n] = int(ch.queue_declare(n, passive=True).message_count)
        except self.connection_errors:
            return found
        return found

    def purge(self) -> None:
        with self.connection() as conn:
            for q in self.all_queues():
                with contextlib.suppress(Exception):  # not declared yet: nothing to purge
                    q(conn.channel()).purge()

    # -- publishing ----------------------------------------------------------------------------
    def _producer(self) -> Any:
        prod = getattr(self._local, "producer", None)
        if prod is None:
            conn = self.connection()
            conn.ensure_connection(max_retries=5, interval_start=0.5, interval_step=1, interval_max=3)
            prod = conn.Producer()
            self._local.conn, self._local.producer = conn, prod
        return prod

    def _drop_producer(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.producer = self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                conn.release()

    def _put(self, exchange: Exchange, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        """Persistent publish, returning only after the broker's confirm. One reconnect on failure."""
        for attempt in (1, 2):
            try:
                self._producer().publish(
                    body, exchange=exchange, routing_key=routing_key, headers=headers, delivery_mode=2,
                    content_type="application/octet-stream", content_encoding="binary",
                    declare=[exchange] if attempt == 2 else None, retry=False,
                    timeout=self.settings.confirm_timeout, confirm_timeout=self.settings.confirm_timeout,
                )
                return
            except (*self.connection_errors, MessageNacked) as exc:  # nacked: a quorum queue lost its leader
                self._drop_producer()
                if attempt == 2:
                    raise BrokerError(f"publish to {exchange.name} not confirmed: {exc.__class__.__name__}") from exc
                time.sleep(0.2)

    def _put_many(self, exchange: Exchange, items: list[tuple[bytes, str, dict[str, Any]]]) -> None:
        """Publish them all, then await their confirms together (one round trip)."""
        for attempt in (1, 2):
            try:
                self._publish_confirmed_batch(exchange.name, items)
                return
            except self.connection_errors + self.channel_errors + (TimeoutError,) as exc:
                self._drop_batch_channel()
                if attempt == 2:
                    raise BrokerError(
                        f"batch publish to {exchange.name} not confirmed: {exc.__class__.__name__}") from exc
                time.sleep(0.2)

    def _batch_channel(self) -> tuple[Any, Any, set[int]]:
        found = getattr(self._local, "batch", None)
        if found is None:
            conn = Connection(self.url, heartbeat=30, connect_timeout=10)  # confirms are awaited per batch, below
            conn.ensure_connection(max_retries=5, interval_start=0.5, interval_step=1, interval_max=3)
            ch = conn.channel()
            ch.confirm_select()
            pending: set[int] = set()

            def on_ack(tag: int, multiple: bool) -> None:
                if multiple:
                    pending.difference_update([t for t in pending if t <= tag])
                else:
                    pending.discard(tag)

            def on_nack(tag: int, multiple: bool) -> None:
                raise OperationalError(f"broker refused (nack) message {tag}")

            ch.events["basic_ack"].add(on_ack)
            ch.events["basic_nack"].add(on_nack)
            found = self._local.batch = (conn, ch, pending, [0])
        return found[0], found[1], found[2]

    def _drop_batch_channel(self) -> None:
        found = getattr(self._local, "batch", None)
        self._local.batch = None
        if found is not None:
            with contextlib.suppress(Exception):  # already broken
                found[0].release()

    def _publish_confirmed_batch(self, exchange: str, out: list[tuple[bytes, str, dict[str, Any]]]) -> None:
        from amqp import Message

        conn, ch, pending = self._batch_channel()
        counter = self._local.batch[3]
        for body, key, h in out:
            ch.basic_publish(Message(body, application_headers=h, delivery_mode=2,
                                     content_type="application/octet-stream", content_encoding="binary"),
                             exchange=exchange, routing_key=key)
            counter[0] += 1
            pending.add(counter[0])
        deadline = time.monotonic() + self.settings.confirm_timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(pending)} publishes not confirmed")
            conn.drain_events(timeout=left)

    def close(self) -> None:
        self._drop_producer()
        self._drop_batch_channel()

    # -- consuming -----------------------------------------------------------------------------
    def consume(self, queues: list[Queue], handler: Handler, stop: threading.Event, *, name: str,
                max_batch: int | None = None) -> None:
        """Consume `queues` with one channel per shard; reconnect with backoff on broker loss."""
        limit, linger = self._batching(max_batch)
        ShardConsumer(self, queues, lambda batch: self._run(handler, batch), name=name, limit=limit,
                      linger=linger).run(stop)
