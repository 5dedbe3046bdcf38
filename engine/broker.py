"""The pipeline transport: one interface over kombu, `memory://` in-process or `amqp://` RabbitMQ.

Topology (ARCHITECTURE §3), the same names on both transports:

    wasla.in   (direct)  --shard.<n>-->                      wasla.transform.<n>
    wasla.out  (topic)   --<channel>.<type>.<event>.s<n>-->  wasla.deliver.<destination>.<n>
    wasla.dead (direct)  --<queue role>-->                   wasla.dead.transform, wasla.dead.<destination>
    wasla.retry (topic)  --<destination>.<round>.<n>-->      wasla.retry.<destination>.<round>  (TTL: the delay)
       ... expired, dead-lettered with the same key to
    wasla.redeliver (topic) --<destination>.*.<n>-->          wasla.deliver.<destination>.<n>

Queues are durable, dead-lettered to `wasla.dead`, and (on RabbitMQ) single-active-consumer so
each shard keeps its patients' order; a consumer leaves by closing its channel, never by
cancelling, so what it held goes to the next one first (`Broker._leave`). Publishes are
persistent and, on RabbitMQ, confirmed before `publish` returns: that is what lets intake
answer AA. On `memory://` durability comes from the journal alone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from amqp.abstract_channel import IGNORED_METHOD_DURING_CHANNEL_CLOSE
from amqp.exceptions import MessageNacked
from kombu import Connection, Exchange, Queue, binding
from kombu.exceptions import OperationalError

from engine.config import BrokerSettings
from engine.errors import BrokerError
from engine.membus import BUS, Envelope

__all__ = ["Broker", "Delivery", "Route", "received_epoch"]

_log = structlog.get_logger("wasla.broker")


def _not_a_leave(record: logging.LogRecord) -> bool:
    """py-amqp warns once per delivery that arrives while a channel closes: expected when a consumer
    leaves (`Broker._leave`), and RabbitMQ returns those messages to the queue."""
    return record.msg is not IGNORED_METHOD_DURING_CHANNEL_CLOSE


logging.getLogger("amqp").addFilter(_not_a_leave)

IN = Exchange("wasla.in", type="direct", durable=True)
OUT = Exchange("wasla.out", type="topic", durable=True)
DEAD = Exchange("wasla.dead", type="direct", durable=True)
RETRY = Exchange("wasla.retry", type="topic", durable=True)
REDELIVER = Exchange("wasla.redeliver", type="topic", durable=True)


@dataclass(frozen=True)
class Route:
    """A destination's queues take messages of these channels and types (facility and condition are
    decided by the transform: engine.route), and its retry rounds wait these delays."""

    destination: str
    channels: tuple[str, ...]
    types: tuple[str, ...] = ()
    delays_s: tuple[float, ...] = ()


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
        """Dead-letter it (RabbitMQ routes it to wasla.dead.*; the journal keeps it on memory://)."""
        self._message.reject(requeue=False)
        self.settled = True

    def requeue(self) -> None:
        self._message.requeue()
        self.settled = True

    def keepalive(self) -> None:
        """Heartbeat the consumer's connection while a handler holds its batch (a paused destination)."""
        with contextlib.suppress(Exception):  # the embedded bus has no connection; a dead one is found later
            self._message.channel.connection.heartbeat_tick()


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


class _Local:
    """What a Delivery calls on the embedded bus: taking was acknowledging."""

    __slots__ = ("envelope",)

    def __init__(self, envelope: Envelope) -> None:
        self.envelope = envelope

    def ack(self) -> None:
        pass

    def reject(self, requeue: bool = False) -> None:
        BUS.reject(self.envelope)

    def requeue(self) -> None:
        BUS.requeue(self.envelope)


_IDLE_CHECK_S = 30.0  # a consumer idle this long checks that its queues are empty (Broker._check_idle)
_BALANCE_S = 2.0  # how often a consumer compares the shards it works with its fair share (Broker._balance)


def _segment(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "_"


class _Shards:
    """One channel and one consumer per queue (shard) of a consuming thread: a shard can then be
    handed over alone (`Broker._balance`). `last` is when each shard last delivered here."""

    def __init__(self, broker: Broker, conn: Connection, queues: list[Queue], name: str) -> None:
        self.broker, self.conn, self.queues = broker, conn, queues
        self.pending: list[Delivery] = []
        self.counts = [0, 0]  # deliveries received, handed to the handler: the idle watchdog logs them
        self.last = [0.0] * len(queues)
        self.consumers: list[Any] = []
        # A quorum queue counts only its active consumer; the processes of this role are counted as
        # the consumers of a queue nobody publishes to, one per consuming thread, gone with its connection.
        role = queues[0].name.removeprefix("wasla.").rsplit(".", 1)[0] if queues else _segment(name)
        self.members = Queue(f"wasla.members.{role}", durable=True, queue_arguments=broker._replicated({}))
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


class Broker:
    def __init__(self, settings: BrokerSettings, routes: Iterable[Route] = ()) -> None:
        self.settings = settings
        self.url = settings.url
        self.memory = settings.url.startswith("memory://")
        self.routes = tuple(routes)
        self._local = threading.local()
        self._busy = 0  # handlers running now: a graceful stop waits for them (engine.runtime)
        self._busy_lock = threading.Lock()
        self._errors: tuple[type[BaseException], ...] = (OperationalError, OSError,
                                                          *Connection(self.url).connection_errors)
        self._channel_errors: tuple[type[BaseException], ...] = tuple(Connection(self.url).channel_errors)

    # -- topology ------------------------------------------------------------------------------
    def _queue_args(self, dead_key: str) -> dict[str, Any]:
        args: dict[str, Any] = {"x-dead-letter-exchange": DEAD.name, "x-dead-letter-routing-key": dead_key}
        if not self.memory:
            args["x-single-active-consumer"] = True
        return self._replicated(args)

    def _replicated(self, args: dict[str, Any]) -> dict[str, Any]:
        """With `queue_type: quorum`, a queue lives on a majority of the cluster's nodes (Raft), and
        what it dead-letters (a retry's expiry, a rejected message) moves at least once, never dropped:
        RabbitMQ requires `reject-publish` overflow for that (a full queue refuses, the publisher's
        confirm fails, and intake does not ACK)."""
        if self.memory or self.settings.queue_type != "quorum":
            return args
        extra = {"x-queue-type": "quorum"}
        if "x-dead-letter-exchange" in args:
            extra |= {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
        return {**args, **extra}

    def transform_queues(self) -> list[Queue]:
        return [Queue(f"wasla.transform.{n}", IN, routing_key=f"shard.{n}", durable=True,
                      queue_arguments=self._queue_args("transform")) for n in range(self.settings.shards)]

    def _route(self, destination: str) -> Route:
        return next((r for r in self.routes if r.destination == destination), Route(destination, ()))

    def deliver_queues(self, destination: str) -> list[Queue]:
        route = self._route(destination)
        kinds = [(_segment(t.partition("^")[0]), "*" if t.endswith("^*") else _segment(t.partition("^")[2] or "none"))
                 for t in route.types] or [("*", "*")]
        queues = []
        for n in range(self.settings.shards):
            keys = [f"{_segment(ch)}.{mtype}.{event}.s{n}" for ch in route.channels for mtype, event in kinds]
            name = f"wasla.deliver.{destination}.{n}"
            bindings = [binding(OUT, routing_key=k) for k in keys]
            bindings.append(binding(REDELIVER, routing_key=f"{_segment(destination)}.*.{n}"))  # back from a retry
            queues.append(Queue(name, exchange=OUT, bindings=bindings, durable=True,
                                queue_arguments=self._queue_args(destination)))
        return queues

    def retry_queues(self, destination: str) -> list[Queue]:
        """One delay queue per retry round: a message waits its TTL there, then goes back to its shard."""
        queues = []
        for level, delay in enumerate(self._route(destination).delays_s):
            args = {"x-message-ttl": int(delay * 1000), "x-dead-letter-exchange": REDELIVER.name}
            queues.append(Queue(f"wasla.retry.{destination}.{level}", RETRY,
                                routing_key=f"{_segment(destination)}.{level}.*", durable=True,
                                queue_arguments=self._replicated(args)))
        return queues

    def dead_queues(self) -> list[Queue]:
        keys = ["transform", *(r.destination for r in self.routes)]
        args = self._replicated({}) or None
        return [Queue(f"wasla.dead.{k}", DEAD, routing_key=k, durable=True, queue_arguments=args) for k in keys]

    def all_queues(self) -> list[Queue]:
        out = self.transform_queues() + self.dead_queues()
        for r in self.routes:
            out += self.deliver_queues(r.destination) + self.retry_queues(r.destination)
        return out

    def declare(self) -> None:
        """Declare every exchange, queue and binding (idempotent; every role does it at start)."""
        if self.memory:
            for q in self.all_queues():
                args = q.queue_arguments or {}
                pairs = [(b.exchange.name, b.exchange.type, b.routing_key) for b in q.bindings] or [
                    (q.exchange.name, q.exchange.type, q.routing_key)]
                BUS.declare(q.name, pairs, args.get("x-dead-letter-exchange", ""),
                            args.get("x-dead-letter-routing-key", ""), args.get("x-message-ttl", 0) / 1000.0)
            return
        with self.connection() as conn:
            conn.ensure_connection(max_retries=5, interval_start=0.5, interval_step=1, interval_max=3)
            channel = conn.channel()
            for ex in (IN, OUT, DEAD, RETRY, REDELIVER):
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
        """A kombu connection to RabbitMQ (the embedded transport has none: see engine.membus)."""
        return Connection(self.url, transport_options={"confirm_publish": True}, heartbeat=30, connect_timeout=10)

    def backlog(self) -> int:
        """Messages waiting in the in-process transport's queues (it holds them in memory: transform and
        delivery); 0 on RabbitMQ, which keeps its queues on disk and applies its own flow control."""
        if not self.memory:
            return 0
        queues = self.transform_queues() + [q for r in self.routes for q in self.deliver_queues(r.destination)]
        return sum(BUS.depth(q.name) for q in queues)

    def depths(self) -> dict[str, int]:
        """Messages ready in each queue of the topology (on RabbitMQ: a passive declare per queue)."""
        names = [q.name for q in self.all_queues()]
        if self.memory:
            return {n: BUS.depth(n) for n in names}
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
        """Empty every queue of the topology (tests and benchmarks start from nothing)."""
        if self.memory:
            for q in self.all_queues():
                BUS.purge(q.name)
            return
        with self.connection() as conn:
            for q in self.all_queues():
                with contextlib.suppress(Exception):  # not declared yet: nothing to purge
                    q(conn.channel()).purge()

    def shard_of(self, patient_key: str, fallback: str) -> int:
        key = patient_key or fallback
        return zlib.crc32(key.encode()) % self.settings.shards

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

    def _publish(self, body: bytes, exchange: Exchange, routing_key: str, headers: dict[str, Any]) -> None:
        """Persistent publish; on RabbitMQ returns only after the broker's confirm. One reconnect on failure."""
        if self.memory:
            BUS.publish(exchange.name, routing_key, body, headers)
            return
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

    def publish_in(self, body: bytes, *, message_id: str, channel: str, patient_key: str,
                   headers: dict[str, Any]) -> None:
        shard = self.shard_of(patient_key, message_id)
        self._publish(body, IN, f"shard.{shard}", {"message_id": message_id, "channel": channel,
                                                    "patient_key": patient_key, **headers})

    def _out(self, body: bytes, message_id: str, channel: str, message_type: str, patient_key: str,
             headers: dict[str, Any]) -> tuple[bytes, str, dict[str, Any]]:
        mtype, _, event = message_type.partition("^")
        shard = self.shard_of(patient_key, message_id)
        key = f"{_segment(channel)}.{_segment(mtype)}.{_segment(event or 'none')}.s{shard}"
        return body, key, {"message_id": message_id, "channel": channel, "patient_key": patient_key,
                           "message_type": message_type, **headers}

    def publish_out(self, body: bytes, *, message_id: str, channel: str, message_type: str, patient_key: str,
                    headers: dict[str, Any]) -> None:
        body, key, h = self._out(body, message_id, channel, message_type, patient_key, headers)
        self._publish(body, OUT, key, h)

    def publish_out_many(self, items: list[tuple[bytes, str, str, str, str, dict[str, Any]]]) -> None:
        """`publish_out` for a batch of (body, message id, channel, type, patient key, headers): on
        RabbitMQ all are published, then their confirms awaited together (one round trip, not one per
        message: a kombu confirmed publish waits ~0.6 ms each)."""
        out = [self._out(*item) for item in items]
        if self.memory:
            for body, key, h in out:
                BUS.publish(OUT.name, key, body, h)
            return
        for attempt in (1, 2):
            try:
                self._publish_confirmed_batch(OUT.name, out)
                return
            except (*self._errors, *self._channel_errors, TimeoutError) as exc:
                self._drop_batch_channel()
                if attempt == 2:
                    raise BrokerError(f"batch publish to {OUT.name} not confirmed: {exc.__class__.__name__}") from exc
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

    def publish_retry(self, body: bytes, *, destination: str, level: int, patient_key: str, message_id: str,
                      headers: dict[str, Any]) -> None:
        """Send a message to wait in retry round `level`'s delay queue; it comes back to its own shard."""
        shard = self.shard_of(patient_key, message_id)
        self._publish(body, RETRY, f"{_segment(destination)}.{level}.{shard}", headers)

    def publish_dead(self, body: bytes, *, destination: str, headers: dict[str, Any]) -> None:
        """Put a message in `wasla.dead.<destination>` (one that was not taken from a queue: no reject)."""
        self._publish(body, DEAD, destination, headers)

    def close(self) -> None:
        self._drop_producer()
        self._drop_batch_channel()

    # -- consuming -----------------------------------------------------------------------------
    def consume(self, queues: list[Queue], handler: Callable[[list[Delivery]], None], stop: threading.Event,
                *, name: str, max_batch: int | None = None) -> None:
        """Run `handler` on batches of messages until `stop` is set; reconnect with backoff on broker loss.

        A batch starts with the first message and takes what else arrives within the linger time
        (`batch_linger_ms`), up to `max_batch` (never more than the prefetch), as Benthos and Vector
        batch: under load the handler pays one journal commit and one fsync for many messages, and
        a lone message waits at most the linger time for company.
        """
        backoff = 0.5
        limit = max(1, min(max_batch or self.settings.batch_max, self.settings.prefetch))
        linger_ms = self.settings.batch_linger_ms
        if linger_ms is None:  # a RabbitMQ batch pays a confirmed commit: worth waiting longer for company
            linger_ms = 5.0 if self.memory else 20.0
        linger = linger_ms / 1000.0
        if self.memory:
            names = [q.name for q in queues]
            while not stop.is_set():
                taken = BUS.take(names, limit, linger, stop)
                if taken:
                    batch = [Delivery(e.body, e.headers, _Local(e)) for e in taken]
                    self._run(handler, batch)
                    for d in batch:
                        if not d.settled:  # handed back (a stopping handler): where it was, by its sequence
                            d.requeue()
            return
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

    def _drain(self, conn: Connection, shards: _Shards, handler: Callable[[list[Delivery]], None],
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
        adding processes added nothing (the fault runs: one transform process handled all 3,600
        messages, the other none). A process busy on more than ceil(shards / processes) shards (the
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
        next consumer at once (RabbitMQ 3.10, measured: cancel with m1, m2 held, and the next
        consumer gets m3 … m8, then m1, m2). That broke a patient's order whenever a worker stopped
        or the idle watchdog restarted a consumer: the full-size PostgreSQL-restart fault run left
        patient 78 on ADMIT. Closing the channel returns the held messages first (m1 … m8 in order).
        """
        with contextlib.suppress(*self._errors, *self._channel_errors, AttributeError):
            consumer.channel.close()

    def _check_idle(self, conn: Connection, queues: list[Queue], name: str, seen: list[int],
                    counts: list[int], pending: int) -> None:
        """Idle for a while although its queues hold ready messages that nobody took since the last
        check: start over.

        Once in bench/scaling.py a transform process sat idle holding 300 unacknowledged messages
        (three shards, single-active consumer) without its handler ever seeing them, cause not
        found. Ready messages behind an idle consumer usually mean it is a standby and another
        process is the active one: then the count moves between two checks and nothing is done.
        A count that did not go down in `_IDLE_CHECK_S` means nobody consumes; starting over hands
        the unacknowledged messages back to the queue and to whoever is active next.

        The full-size fault run saw it again: an active transform consumer handled nothing for a
        minute, and in the handover a patient's first message came back behind their next two. The
        warning says what this consumer received and handed over, and how many consumers each
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

    def _run(self, handler: Callable[[list[Delivery]], None], batch: list[Delivery]) -> None:
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

    @staticmethod
    def _more(conn: Connection, wait: float) -> bool:
        """Take one more message if one arrives within `wait` s (the callback appends it to the batch)."""
        try:
            conn.drain_events(timeout=max(wait, 0.0))
        except TimeoutError:
            return False
        return True
