"""The pipeline's exchanges, queues and routing keys, and the shard arithmetic, in one place.

The same names on every transport (ARCHITECTURE §3):

    wasla.in   (direct)  --shard.<n>-->                      wasla.transform.<n>
    wasla.out  (topic)   --<channel>.<type>.<event>.s<n>-->  wasla.deliver.<destination>.<n>
    wasla.dead (direct)  --<queue role>-->                   wasla.dead.transform, wasla.dead.<destination>
    wasla.retry (topic)  --<destination>.<round>.<n>-->      wasla.retry.<destination>.<round>  (TTL: the delay)
       ... expired, dead-lettered with the same key to
    wasla.redeliver (topic) --<destination>.*.<n>-->          wasla.deliver.<destination>.<n>

Every queue is durable and dead-lettered to `wasla.dead`. What a broker adds to a queue's
arguments (RabbitMQ's single-active consumer, quorum replication) is the transport's: it
subclasses `Topology` and overrides `shard_arguments` and `replicated`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kombu import Exchange, Queue, binding

__all__ = ["DEAD", "EXCHANGES", "IN", "OUT", "REDELIVER", "RETRY", "Route", "Topology", "segment", "shard_of"]

IN = Exchange("wasla.in", type="direct", durable=True)
OUT = Exchange("wasla.out", type="topic", durable=True)
DEAD = Exchange("wasla.dead", type="direct", durable=True)
RETRY = Exchange("wasla.retry", type="topic", durable=True)
REDELIVER = Exchange("wasla.redeliver", type="topic", durable=True)
EXCHANGES = (IN, OUT, DEAD, RETRY, REDELIVER)


@dataclass(frozen=True)
class Route:
    """A destination's queues take messages of these channels and types (facility and condition are
    decided by the transform: engine.pipeline.route), and its retry rounds wait these delays."""

    destination: str
    channels: tuple[str, ...]
    types: tuple[str, ...] = ()
    delays_s: tuple[float, ...] = ()


def segment(text: str) -> str:
    """`text` as one word of a routing key: anything but letters, digits, `-` and `_` becomes `_`."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "_"


def shard_of(patient_key: str, fallback: str, shards: int) -> int:
    """The shard of a patient (of `fallback`, the message id, when there is no patient key): a
    patient's messages all go through one queue, so they keep their order."""
    return zlib.crc32((patient_key or fallback).encode()) % shards


class Topology:
    """Owns the names: every exchange, queue, binding and routing key of the pipeline for `shards`
    shards and these routes. The same message goes to the same shard on every transport."""

    def __init__(self, shards: int, routes: Iterable[Route] = ()) -> None:
        self.shards = shards
        self.routes = tuple(routes)

    # -- what a broker adds to a queue's arguments ---------------------------------------------
    def shard_arguments(self, args: dict[str, Any]) -> dict[str, Any]:
        """Arguments of a shard queue (transform and deliver) beyond dead-lettering; none here."""
        return args

    def replicated(self, args: dict[str, Any]) -> dict[str, Any]:
        """Arguments of any queue once replication is asked for; none here."""
        return args

    def _queue_args(self, dead_key: str) -> dict[str, Any]:
        args: dict[str, Any] = {"x-dead-letter-exchange": DEAD.name, "x-dead-letter-routing-key": dead_key}
        return self.replicated(self.shard_arguments(args))

    # -- routing keys --------------------------------------------------------------------------
    def shard_of(self, patient_key: str, fallback: str) -> int:
        return shard_of(patient_key, fallback, self.shards)

    def in_key(self, patient_key: str, message_id: str) -> str:
        return f"shard.{self.shard_of(patient_key, message_id)}"

    def out_key(self, channel: str, message_type: str, patient_key: str, message_id: str) -> str:
        mtype, _, event = message_type.partition("^")
        shard = self.shard_of(patient_key, message_id)
        return f"{segment(channel)}.{segment(mtype)}.{segment(event or 'none')}.s{shard}"

    def retry_key(self, destination: str, level: int, patient_key: str, message_id: str) -> str:
        return f"{segment(destination)}.{level}.{self.shard_of(patient_key, message_id)}"

    # -- queues --------------------------------------------------------------------------------
    def route(self, destination: str) -> Route:
        return next((r for r in self.routes if r.destination == destination), Route(destination, ()))

    def transform_queues(self) -> list[Queue]:
        return [Queue(f"wasla.transform.{n}", IN, routing_key=f"shard.{n}", durable=True,
                      queue_arguments=self._queue_args("transform")) for n in range(self.shards)]

    def deliver_queues(self, destination: str) -> list[Queue]:
        route = self.route(destination)
        kinds = [(segment(t.partition("^")[0]), "*" if t.endswith("^*") else segment(t.partition("^")[2] or "none"))
                 for t in route.types] or [("*", "*")]
        queues = []
        for n in range(self.shards):
            keys = [f"{segment(ch)}.{mtype}.{event}.s{n}" for ch in route.channels for mtype, event in kinds]
            name = f"wasla.deliver.{destination}.{n}"
            bindings = [binding(OUT, routing_key=k) for k in keys]
            bindings.append(binding(REDELIVER, routing_key=f"{segment(destination)}.*.{n}"))  # back from a retry
            queues.append(Queue(name, exchange=OUT, bindings=bindings, durable=True,
                                queue_arguments=self._queue_args(destination)))
        return queues

    def retry_queues(self, destination: str) -> list[Queue]:
        """One delay queue per retry round: a message waits its TTL there, then goes back to its shard."""
        queues = []
        for level, delay in enumerate(self.route(destination).delays_s):
            args = {"x-message-ttl": int(delay * 1000), "x-dead-letter-exchange": REDELIVER.name}
            queues.append(Queue(f"wasla.retry.{destination}.{level}", RETRY,
                                routing_key=f"{segment(destination)}.{level}.*", durable=True,
                                queue_arguments=self.replicated(args)))
        return queues

    def dead_queues(self) -> list[Queue]:
        keys = ["transform", *(r.destination for r in self.routes)]
        args = self.replicated({}) or None
        return [Queue(f"wasla.dead.{k}", DEAD, routing_key=k, durable=True, queue_arguments=args) for k in keys]

    def all_queues(self) -> list[Queue]:
        out = self.transform_queues() + self.dead_queues()
        for r in self.routes:
            out += self.deliver_queues(r.destination) + self.retry_queues(r.destination)
        return out
