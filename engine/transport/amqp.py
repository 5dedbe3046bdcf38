"""The `amqp://` transport: the pipeline's queues on RabbitMQ, through kombu and py-amqp.

Queues are durable, dead-lettered to `wasla.dead`, and single-active-consumer so each shard
keeps its patients' order; a consumer leaves by closing its channel, never by cancelling, so
what it held goes to the next one first (`AMQPTransport._leave`). Publishes are persistent and
confirmed before `publish_*` returns: that is what lets intake answer AA. With
`queue_type: quorum` every queue is replicated on the cluster (`RabbitTopology.replicated`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, ClassVar

import structlog
from amqp.abstract_channel import IGNORED_METHOD_DURING_CHANNEL_CLOSE
from amqp.exceptions import MessageNacked
from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError

from engine.config import BrokerSettings
from engine.errors import BrokerError
from engine.transport.base import Capabilities, Delivery, Handler, Transport
from engine.transport.topology import EXCHANGES, Route, Topology, segment

__all__ = ["AMQPTransport", "RabbitTopology"]

_log = structlog.get_logger("wasla.broker")

def _not_a_leave(record: logging.LogRecord) -> bool:
    """py-amqp warns once per delivery that arrives while a channel closes: expected when a consumer
    leaves (`AMQPTransport._leave`), and RabbitMQ returns those messages to the queue."""
    return record.msg is not IGNORED_METHOD_DURING_CHANNEL_CLOSE


logging.getLogger("amqp").addFilter(_not_a_leave)

_IDLE_CHECK_S = 30.0  # a consumer idle this long checks that its queues are empty (AMQPTransport._check_idle)
_BALANCE_S = 2.0  # how often a consumer compares the shards it works with its fair share (AMQPTransport._balance)


class _Shards:
    """One channel and one consumer per queue (shard) of a consuming thread: a shard can then be
    handed over alone (`AMQPTransport._balance`). `last` is when each shard last delivered here."""

    def __init__(self, broker: AMQPTransport, conn: Connection, queues: list[Queue], name: str) -> None:
        self.broker, self.conn, self.queues = broker, conn, queues
        self.pending: list[Delivery] = []
        self.counts = [0, 0]  # deliveries received, handed to the handler: the idle watchdog logs them
        self.last = [0.0] * len(queues)
        self.consumers: list[Any] = []
        # A quorum queue counts only its active consumer; the processes of this role are counted as
        # the consumers of a queue nobody publishes to, one per consuming thread, gone with its connection.
        role = queues[0].name.removeprefix("wasla.").rsplit(".", 1)[0] if queues else segment(name)
        self.members = Queue(f"wasla.members.{role}", durable=True, queue_arguments=broker.topology.replicated({}))
        self.presence: Any = None
        try:
            self.presence = conn.Consumer([self.members], channel=conn.channel(), callbacks=[],
                                          accept=["application/octet-stream"])
            self.presence.consume()
            for i in range(len(queues)):
                self.consumers.append(self._open(i))
        except BaseException:
            self.close()
            raise

    def _open(self, i: int) -> Any:
        def on_message(body: Any, message: Any) -> None:
            raw = message.body if isinstance(message.body, bytes) else bytes(message.body, "latin-1")
            self.pending.append(Delivery(raw, dict(message.headers or {}), message))
            self.counts[0] += 1
            self.last[i] = time.monotonic()

        consumer = self.conn.Consumer([self.queues[i]], channel=self.conn.channel(), callbacks=[on_message],
                                      prefetch_count=self.broker.settings.prefetch,
                                      accept=["application/octet-stream"])
        consumer.consume()
        return consumer

    def hand_over(self, i: int) -> None:
        """Leave shard `i` (what this consumer held goes back, in order, to the next one waiting) and
        register again behind the others. Deliveries of the closed channel that arrived meanwhile are
        dropped here: the broker returned them."""
        old = self.consumers[i]
        self.broker._leave(old)
        self.pending[:] = [d for d in self.pending if d._message.channel is not old.channel]
        self.last[i] = 0.0
        self.consumers[i] = self._open(i)

    def close(self) -> None:
        for consumer in (*self.consumers, self.presence):
            if consumer is not None:
                self.broker._leave(consumer)


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
    consumes shards with reconnect, fair sharing between processes (`_balance`) and an idle
    watchdog (`_check_idle`)."""

    capabilities: ClassVar[Capabilities] = Capabilities(in_process=False, durable_publish=True)
    linger_ms: ClassVar[float] = 20.0  # a batch pays a confirmed commit: worth waiting longer for company
    topology: RabbitTopology

    def __init__(self, settings: BrokerSettings, routes: Iterable[Route] = ()) -> None:
        super().__init__(settings, routes)
        self._local = threading.local()
        self._errors: tuple[type[BaseException], ...] = (OperationalError, OSError,
                                                          *Connection(self.url).connection_errors)
        self._channel_errors: tuple[type[BaseException], ...] = tuple(Connection(self.url).channel_errors)

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
                except self._channel_errors as exc:  # PRECONDITION_FAILED: it exists with other arguments
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
                    with contextlib.suppress(*self._channel_errors):
                        found[n] = int(ch.queue_declare(n, passive=True).message_count)
        except self._errors:
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
            except (*self._errors, MessageNacked) as exc:  # nacked: a quorum queue lost its leader mid-publish
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
            except self._errors + self._channel_errors + (TimeoutError,) as exc:
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
        backoff = 0.5
        limit, linger = self._batching(max_batch)
        while not stop.is_set():
            try:
                with self.connection() as conn:
                    conn.ensure_connection(max_retries=3, interval_start=0.5, interval_step=1, interval_max=3)
                    shards = _Shards(self, conn, queues, name)
                    try:
                        backoff = 0.5
                        self._drain(conn, shards, handler, stop, name, limit, linger)
                    finally:
                        shards.close()
            except self._errors as exc:
                if stop.is_set():
                    return
                _log.warning("broker_connection_lost", consumer=name, error=exc.__class__.__name__,
                             retry_in_s=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _drain(self, conn: Connection, shards: _Shards, handler: Handler,
               stop: threading.Event, name: str, limit: int, linger: float) -> None:
        """Hand the handler batches until `stop` is set, or until it leaves a batch unsettled (a
        stopping handler hands its messages back): then the consumer must go (`_leave`)."""
        pending, counts = shards.pending, shards.counts
        idle_since, balanced, seen = time.monotonic(), time.monotonic(), [-1]
        while not stop.is_set():
            if time.monotonic() - balanced > _BALANCE_S:
                balanced = time.monotonic()
                self._balance(conn, shards, name)
            if not pending:
                try:
                    conn.drain_events(timeout=0.5)  # wait for the first
                except TimeoutError:
                    conn.heartbeat_check()  # an idle consumer still tells the broker it is alive
                    if time.monotonic() - idle_since > _IDLE_CHECK_S:
                        idle_since = time.monotonic()
                        self._check_idle(conn, shards.queues, name, seen, counts, len(pending))
                    continue
            idle_since = time.monotonic()
            deadline = time.monotonic() + linger
            while len(pending) < limit and self._more(conn, deadline - time.monotonic()):
                pass  # take what arrives before the deadline
            if pending:
                batch, pending[:] = list(pending), []
                counts[1] += len(batch)
                self._run(handler, batch)
                if left := sum(not d.settled for d in batch):
                    _log.info("consumer_handing_back", consumer=name, messages=left)
                    return

    def _balance(self, conn: Connection, shards: _Shards, name: str) -> None:
        """Hand over the shards this process works beyond its fair share, so that every process of a
        role works.

        Single-active consumer gives a queue to the first consumer that registered on it: the
        process that starts first is active on every shard and the others wait as standbys, so
        adding processes would add nothing (bench/results/2026-12-06-scaling.md). A process busy on
        more than ceil(shards / processes) shards (the
        processes counted on `wasla.members.<role>`) leaves the extra ones, each by closing its
        channel, so the next waiting process takes it over in order, and registers again behind it.
        """
        now = time.monotonic()
        busy = [i for i, at in enumerate(shards.last) if now - at < _BALANCE_S]
        if len(busy) < 2:
            return
        processes = self._declared(conn, [shards.members])[shards.members.name][1]
        fair = -(-len(shards.queues) // max(processes, 1))
        if len(busy) <= fair:
            return
        for i in busy[fair:]:
            shards.hand_over(i)
        _log.info("shards_handed_over", consumer=name, busy=len(busy), processes=processes, fair=fair,
                  queues=[shards.queues[i].name for i in busy[fair:]])

    def _declared(self, conn: Connection, queues: list[Queue]) -> dict[str, tuple[int, int]]:
        """Each queue's ready messages and consumers (a passive declare on a channel of its own)."""
        ch = conn.channel()
        try:
            answers = {q.name: ch.queue_declare(q.name, passive=True) for q in queues}
        finally:
            with contextlib.suppress(*self._channel_errors, *self._errors):
                ch.close()
        return {q: (int(d.message_count), int(d.consumer_count)) for q, d in answers.items()}

    def _leave(self, consumer: Any) -> None:
        """Stop consuming by closing the channel, never by `basic.cancel`: RabbitMQ then returns every
        message the consumer held, in delivery order, before the next single-active consumer starts.

        A cancelled quorum-queue consumer keeps the messages it holds while the queue activates the
        next consumer at once, so the next consumer gets m3 … m8, then m1, m2
        (bench/results/2026-12-06-faults.md): a patient's order would break whenever a worker stops
        or the idle watchdog restarts a consumer. Closing the channel returns the held messages
        first (m1 … m8 in order).
        """
        with contextlib.suppress(*self._errors, *self._channel_errors, AttributeError):
            consumer.channel.close()

    def _check_idle(self, conn: Connection, queues: list[Queue], name: str, seen: list[int],
                    counts: list[int], pending: int) -> None:
        """Idle for a while although its queues hold ready messages that nobody took since the last
        check: start over.

        A consumer can sit idle holding unacknowledged messages its handler never sees, cause
        unknown (bench/results/2026-11-25-scaling.md, 2026-12-06-faults.md). Ready messages behind
        an idle consumer usually mean it is a standby and another process is the active one: then
        the count moves between two checks and nothing is done. A count that did not go down in
        `_IDLE_CHECK_S` means nobody consumes; starting over hands the unacknowledged messages back
        to the queue and to whoever is active next.

        The warning says what this consumer received and handed over, and how many consumers each
        queue has, to tell a delivery that never came from one that never reached the handler.
        """
        declared = self._declared(conn, queues)
        total, before = sum(ready for ready, _ in declared.values()), seen[0]
        seen[0] = total
        if total and before != -1 and total >= before:
            _log.warning("consumer_idle_with_ready_messages", consumer=name, ready=total, reconnect=True,
                         received=counts[0], handled=counts[1], pending=pending,
                         queues={q: list(d) for q, d in declared.items()})
            raise OperationalError(f"consumer {name} idle while its queues hold {total} messages")

    @staticmethod
    def _more(conn: Connection, wait: float) -> bool:
        """Take one more message if one arrives within `wait` s (the callback appends it to the batch)."""
        try:
            conn.drain_events(timeout=max(wait, 0.0))
        except TimeoutError:
            return False
        return True
