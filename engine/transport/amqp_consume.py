"""Consuming the pipeline's shard queues on RabbitMQ: one consuming thread's shards, batches and watchdogs.

Every shard queue is single-active-consumer, so one consumer at a time keeps a shard's order. A consumer
leaves by closing its channel, never by cancelling, so what it held goes to the next one first (`leave`).
A process busy on more than its fair share of a role's shards hands the extra ones over
(`ShardConsumer._balance`), and a consumer idle while its queues hold messages nobody takes starts over
(`ShardConsumer._check_idle`). The broker connection is lost: it reconnects with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from amqp.abstract_channel import IGNORED_METHOD_DURING_CHANNEL_CLOSE
from kombu import Connection, Queue
from kombu.exceptions import OperationalError

from engine.config import BrokerSettings
from engine.transport.base import Delivery
from engine.transport.topology import Topology, segment

__all__ = ["Broker", "ShardConsumer", "leave"]

_log = structlog.get_logger("wasla.broker")


def _not_a_leave(record: logging.LogRecord) -> bool:
    """py-amqp warns once per delivery that arrives while a channel closes: expected when a consumer
    leaves (`leave`), and RabbitMQ returns those messages to the queue."""
    return record.msg is not IGNORED_METHOD_DURING_CHANNEL_CLOSE


logging.getLogger("amqp").addFilter(_not_a_leave)

_IDLE_CHECK_S = 30.0  # a consumer idle this long checks that its queues are empty (ShardConsumer._check_idle)
_BALANCE_S = 2.0  # how often a consumer compares the shards it works with its fair share (ShardConsumer._balance)


class Broker(Protocol):
    """What a consumer needs of the RabbitMQ transport: its settings and topology, a new connection, and
    the exceptions that mean the connection (`connection_errors`) or one channel (`channel_errors`) failed."""

    @property
    def settings(self) -> BrokerSettings: ...

    @property
    def topology(self) -> Topology: ...

    @property
    def connection_errors(self) -> tuple[type[BaseException], ...]: ...

    @property
    def channel_errors(self) -> tuple[type[BaseException], ...]: ...

    def connection(self) -> Connection: ...


def leave(consumer: Any, broker: Broker) -> None:
    """Stop consuming by closing the channel, never by `basic.cancel`: RabbitMQ then returns every
    message the consumer held, in delivery order, before the next single-active consumer starts.

    A cancelled quorum-queue consumer keeps the messages it holds while the queue activates the
    next consumer at once, so the next consumer gets m3 … m8, then m1, m2
    (bench/results/2026-12-06-faults.md): a patient's order would break whenever a worker stops
    or the idle watchdog restarts a consumer. Closing the channel returns the held messages
    first (m1 … m8 in order).
    """
    with contextlib.suppress(*broker.connection_errors, *broker.channel_errors, AttributeError):
        consumer.channel.close()


class _Shards:
    """One channel and one consumer per queue (shard) of a consuming thread: a shard can then be
    handed over alone (`ShardConsumer._balance`). `last` is when each shard last delivered here."""

    def __init__(self, broker: Broker, conn: Connection, queues: list[Queue], name: str) -> None:
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
        leave(old, self.broker)
        self.pending[:] = [d for d in self.pending if d._message.channel is not old.channel]
        self.last[i] = 0.0
        self.consumers[i] = self._open(i)

    def close(self) -> None:
        for consumer in (*self.consumers, self.presence):
            if consumer is not None:
                leave(consumer, self.broker)


class ShardConsumer:
    """One thread's consumer of a role's shard queues on RabbitMQ: hands `handle` batches (up to `limit`
    messages, lingering `linger` s for company) until stopped, reconnecting with backoff when the broker
    is lost. Guarantees each shard's messages reach `handle` in queue order, across reconnects and
    handovers (a consumer always leaves by closing its channel), and that a handler leaving a batch
    unsettled makes the consumer leave before taking more."""

    def __init__(self, broker: Broker, queues: list[Queue], handle: Callable[[list[Delivery]], None], *,
                 name: str, limit: int, linger: float) -> None:
        self.broker = broker
        self.queues = queues
        self.handle = handle
        self.name = name
        self.limit = limit
        self.linger = linger

    def run(self, stop: threading.Event) -> None:
        """Consume with one channel per shard until `stop` is set; reconnect with backoff on broker loss."""
        backoff = 0.5
        while not stop.is_set():
            try:
                with self.broker.connection() as conn:
                    conn.ensure_connection(max_retries=3, interval_start=0.5, interval_step=1, interval_max=3)
                    shards = _Shards(self.broker, conn, self.queues, self.name)
                    try:
                        backoff = 0.5
                        self._drain(conn, shards, stop)
                    finally:
                        shards.close()
            except self.broker.connection_errors as exc:
                if stop.is_set():
                    return
                _log.warning("broker_connection_lost", consumer=self.name, error=exc.__class__.__name__,
                             retry_in_s=backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _drain(self, conn: Connection, shards: _Shards, stop: threading.Event) -> None:
        """Hand the handler batches until `stop` is set, or until it leaves a batch unsettled (a
        stopping handler hands its messages back): then the consumer must go (`leave`)."""
        pending, counts = shards.pending, shards.counts
        idle_since, balanced, seen = time.monotonic(), time.monotonic(), [-1]
        while not stop.is_set():
            if time.monotonic() - balanced > _BALANCE_S:
                balanced = time.monotonic()
                self._balance(conn, shards)
            if not pending:
                try:
                    conn.drain_events(timeout=0.5)  # wait for the first
                except TimeoutError:
                    conn.heartbeat_check()  # an idle consumer still tells the broker it is alive
                    if time.monotonic() - idle_since > _IDLE_CHECK_S:
                        idle_since = time.monotonic()
                        self._check_idle(conn, shards.queues, seen, counts, len(pending))
                    continue
            idle_since = time.monotonic()
            deadline = time.monotonic() + self.linger
            while len(pending) < self.limit and self._more(conn, deadline - time.monotonic()):
                pass  # take what arrives before the deadline
            if pending:
                batch, pending[:] = list(pending), []
                counts[1] += len(batch)
                self.handle(batch)
                if left := sum(not d.settled for d in batch):
                    _log.info("consumer_handing_back", consumer=self.name, messages=left)
                    return

    def _balance(self, conn: Connection, shards: _Shards) -> None:
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
        _log.info("shards_handed_over", consumer=self.name, busy=len(busy), processes=processes, fair=fair,
                  queues=[shards.queues[i].name for i in busy[fair:]])

    def _declared(self, conn: Connection, queues: list[Queue]) -> dict[str, tuple[int, int]]:
        """Each queue's ready messages and consumers (a passive declare on a channel of its own)."""
        ch = conn.channel()
        try:
            answers = {q.name: ch.queue_declare(q.name, passive=True) for q in queues}
        finally:
            with contextlib.suppress(*self.broker.channel_errors, *self.broker.connection_errors):
                ch.close()
        return {q: (int(d.message_count), int(d.consumer_count)) for q, d in answers.items()}

    def _check_idle(self, conn: Connection, queues: list[Queue], seen: list[int],
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
            _log.warning("consumer_idle_with_ready_messages", consumer=self.name, ready=total, reconnect=True,
                         received=counts[0], handled=counts[1], pending=pending,
                         queues={q: list(d) for q, d in declared.items()})
            raise OperationalError(f"consumer {self.name} idle while its queues hold {total} messages")

    @staticmethod
    def _more(conn: Connection, wait: float) -> bool:
        """Take one more message if one arrives within `wait` s (the callback appends it to the batch)."""
        try:
            conn.drain_events(timeout=max(wait, 0.0))
        except TimeoutError:
            return False
        return True
