"""The `memory://` transport: named queues in this process, with RabbitMQ's routing rules.

Not kombu's virtual in-memory transport: that costs a message dict, a base64 body and a delivery
tag per publish on the intake path, and its consumers poll every few milliseconds
(bench/results/2026-11-24-mllp.md). What the embedded engine needs is much less: a deque per queue, direct and
topic routing by the same names as on RabbitMQ (ARCHITECTURE §3), dead-lettering on reject,
and a consumer that sleeps until there is work. Durability is not its job: on `memory://` the
journal alone brings messages back after a crash (`Intake.recover`).

`Bus` holds the queues (one per process, `BUS`, shared by every `MemoryTransport` as kombu's
memory transport shares its state); `MemoryTransport` is the pipeline's interface over it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from kombu import Exchange, Queue

from engine.transport.base import Capabilities, Delivery, Handler, Transport

__all__ = ["BUS", "Bus", "Envelope", "MemoryTransport", "topic_matches"]


@dataclass(slots=True)
class Envelope:
    """One queued message, and where it goes if a consumer rejects it."""

    body: bytes
    headers: dict[str, Any]
    queue: str = ""
    seq: int = 0  # publish order: a requeued message goes back where it was
    key: str = ""  # the routing key it was published with: dead-lettering keeps it, as RabbitMQ does
    due: float = 0.0  # in a queue with a TTL: when it expires (monotonic s)


@dataclass
class _Queue:
    name: str
    dead_exchange: str = ""
    dead_key: str = ""
    ttl_s: float = 0.0  # > 0: a delay queue; expired messages are dead-lettered (RabbitMQ x-message-ttl)
    items: deque[Envelope] = field(default_factory=deque)


def topic_matches(pattern: tuple[str, ...], key: tuple[str, ...]) -> bool:
    """AMQP topic matching on dot-separated words: `*` is exactly one word, `#` zero or more."""
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(topic_matches(rest, key[i:]) for i in range(len(key) + 1))
    return bool(key) and (head == "*" or head == key[0]) and topic_matches(rest, key[1:])


class Bus:
    """Owns the in-process queues and their bindings: routes a publish to every bound queue, hands
    consumers batches in publish order, puts a requeued message back where it was, and dead-letters
    rejected and expired messages as RabbitMQ would. Thread-safe; nothing survives the process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queues: dict[str, _Queue] = {}
        self._direct: dict[tuple[str, str], set[str]] = {}
        self._topic: dict[str, set[tuple[tuple[str, ...], str]]] = {}
        self._sleepers = 0  # consumers waiting for a first message: only they need a wake-up
        self._seq = 0
        self._delays: list[_Queue] = []

    # -- topology ------------------------------------------------------------------------------
    def declare(self, queue: str, bindings: list[tuple[str, str, str]], dead_exchange: str = "",
                dead_key: str = "", ttl_s: float = 0.0) -> None:
        """Declare `queue` bound by (exchange, exchange type, routing key) triples; idempotent."""
        with self._cond:
            q = self._queues.setdefault(queue, _Queue(queue, dead_exchange, dead_key, ttl_s))
            if ttl_s > 0 and all(d is not q for d in self._delays):
                self._delays.append(q)
            for exchange, kind, key in bindings:
                if kind == "topic":
                    self._topic.setdefault(exchange, set()).add((tuple(key.split(".")), queue))
                else:
                    self._direct.setdefault((exchange, key), set()).add(queue)

    def purge(self, queue: str) -> int:
        with self._cond:
            q = self._queues.get(queue)
            if q is None:
                return 0
            n = len(q.items)
            q.items.clear()
            return n

    def depth(self, queue: str) -> int:
        q = self._queues.get(queue)
        return len(q.items) if q is not None else 0

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, exchange: str, routing_key: str, body: bytes, headers: dict[str, Any]) -> int:
        """Route to every bound queue; returns how many took it (0: unroutable, dropped as on RabbitMQ)."""
        with self._cond:
            targets = set(self._direct.get((exchange, routing_key), ()))
            if exchange in self._topic:
                words = tuple(routing_key.split("."))
                targets.update(q for pattern, q in self._topic[exchange] if topic_matches(pattern, words))
            self._seq += 1
            now = time.monotonic()
            for name in targets:
                q = self._queues[name]
                q.items.append(Envelope(body, headers, name, self._seq, routing_key, now + q.ttl_s if q.ttl_s else 0.0))
            if targets and self._sleepers:
                self._cond.notify_all()
            return len(targets)

    # -- consuming -----------------------------------------------------------------------------
    def take(self, queues: list[str], limit: int, linger: float, stop: threading.Event,
             wait: float = 0.5) -> list[Envelope]:
        """Up to `limit` messages from `queues`, in queue order: the first waits up to `wait` s,
        the rest are what arrives within `linger` s after it. Taken means acknowledged."""
        if self._delays:
            self.expire()
        with self._cond:
            if not self._ready(queues):
                self._sleepers += 1
                try:
                    self._cond.wait_for(lambda: self._ready(queues) or stop.is_set(), wait)
                finally:
                    self._sleepers -= 1
            if not self._ready(queues):
                return []
        if linger > 0:  # let company arrive without a wake-up per publish
            deadline = time.monotonic() + linger
            while self._pending(queues) < limit and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.001))
        with self._cond:
            batch: list[Envelope] = []
            for name in queues:
                items = self._queues[name].items
                while items and len(batch) < limit:
                    batch.append(items.popleft())
            return batch

    def requeue(self, envelope: Envelope) -> None:
        """Put a message back in its queue ahead of everything published after it (order kept)."""
        with self._cond:
            items = self._queues[envelope.queue].items
            at = 0
            while at < len(items) and items[at].seq < envelope.seq:
                at += 1
            items.insert(at, envelope)
            if self._sleepers:
                self._cond.notify_all()

    def reject(self, envelope: Envelope) -> None:
        """Dead-letter it through the queue's dead-letter exchange, as RabbitMQ does."""
        q = self._queues[envelope.queue]
        if q.dead_exchange:
            self.publish(q.dead_exchange, q.dead_key or envelope.key, envelope.body, envelope.headers)

    def expire(self) -> int:
        """Dead-letter the messages of delay queues whose TTL has run out (the retry path); returns how many.

        Consumers call it before each take, so a delayed message is back at most one take
        timeout (0.5 s) after its due time, without a timer thread.
        """
        now = time.monotonic()
        due: list[tuple[_Queue, Envelope]] = []
        with self._cond:
            for q in self._delays:
                while q.items and q.items[0].due <= now:
                    due.append((q, q.items.popleft()))
        for q, env in due:
            self.publish(q.dead_exchange, q.dead_key or env.key, env.body, env.headers)
        return len(due)

    def _ready(self, queues: list[str]) -> bool:
        return any(self._queues[n].items for n in queues if n in self._queues)

    def _pending(self, queues: list[str]) -> int:
        return sum(len(self._queues[n].items) for n in queues if n in self._queues)


BUS = Bus()  # one per process, like kombu's memory transport: every MemoryTransport shares it


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


class MemoryTransport(Transport):
    """The pipeline's queues on the process-wide `BUS`: a publish is routed at once (nothing to
    confirm, no connection to lose); a consumer sleeps until there is work and hands back, in
    place, what a stopping handler left unsettled. The journal is the only durability."""

    capabilities: ClassVar[Capabilities] = Capabilities(in_process=True, durable_publish=False)
    linger_ms: ClassVar[float] = 5.0

    def declare(self) -> None:
        for q in self.all_queues():
            args = q.queue_arguments or {}  # type: ignore[attr-defined]  # kombu sets Queue.attrs in __init__
            pairs = [(b.exchange.name, b.exchange.type, b.routing_key) for b in q.bindings] or [
                (q.exchange.name, q.exchange.type, q.routing_key)]
            BUS.declare(q.name, pairs, args.get("x-dead-letter-exchange", ""),
                        args.get("x-dead-letter-routing-key", ""), args.get("x-message-ttl", 0) / 1000.0)

    def backlog(self) -> int:
        """Messages waiting in transform and delivery queues: this process holds them in memory."""
        queues = self.transform_queues() + [q for r in self.routes for q in self.deliver_queues(r.destination)]
        return sum(BUS.depth(q.name) for q in queues)

    def depths(self) -> dict[str, int]:
        return {q.name: BUS.depth(q.name) for q in self.all_queues()}

    def purge(self) -> None:
        for q in self.all_queues():
            BUS.purge(q.name)

    def _put(self, exchange: Exchange, routing_key: str, body: bytes, headers: dict[str, Any]) -> None:
        BUS.publish(exchange.name, routing_key, body, headers)

    def _put_many(self, exchange: Exchange, items: list[tuple[bytes, str, dict[str, Any]]]) -> None:
        for body, key, headers in items:
            BUS.publish(exchange.name, key, body, headers)

    def close(self) -> None:
        pass  # no connection

    def consume(self, queues: list[Queue], handler: Handler, stop: threading.Event, *, name: str,
                max_batch: int | None = None) -> None:
        limit, linger = self._batching(max_batch)
        names = [q.name for q in queues]
        while not stop.is_set():
            taken = BUS.take(names, limit, linger, stop)
            if taken:
                batch = [Delivery(e.body, e.headers, _Local(e)) for e in taken]
                self._run(handler, batch)
                for d in batch:
                    if not d.settled:  # handed back (a stopping handler): where it was, by its sequence
                        d.requeue()
