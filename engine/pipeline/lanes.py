"""Patient lanes: a destination takes each patient's messages in the order they were received.

A lane is one patient's messages to one destination. A message of theirs that cannot go now (it takes
a delayed retry round, or it is a dead letter under `on_failure: block`) heads their lane, in the
journal's `lanes` table so that any worker finds it: their later messages wait behind it (`waiting`,
acknowledged from the queue). When the head is delivered the waiting ones follow, oldest first, and the
lane opens. A batch interrupted (the circuit opened, the journal failed) stops where it is, so nothing
behind the interruption overtakes it. Patients are independent: with `concurrency` above one their
lanes run in parallel, each still in order.

Lanes decide who may go and in what order; the deliverer (`LaneWork`) writes and journals outcomes.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from engine import metrics
from engine.errors import DeliveryError, PermanentDeliveryError, StoreError, TransientDeliveryError
from engine.logs import error_fields
from engine.pipeline.retry import PAUSE_S
from engine.store import Journal, OutputRow
from engine.transport import Delivery, received_epoch

__all__ = ["Heads", "Item", "LaneWork", "Lanes", "Paused"]

_log = structlog.get_logger("wasla.deliver")


@dataclass
class Item:
    """One message on its way to a destination: from a queue (`delivery`), or from its lane in the journal
    (None); `prior` is its output's journal row when the batch was read, and `patient` its lane."""

    mid: str
    body: bytes
    headers: dict[str, Any]
    delivery: Delivery | None = None
    prior: OutputRow | None = None
    patient: str = field(init=False)

    def __post_init__(self) -> None:
        self.patient = str(self.headers.get("patient_key", ""))


class Paused(Exception):
    """The circuit opened: what is left of the batch waits for a probe, in order."""


class Heads:
    """Which message heads each patient's lane on one destination during one batch: read from the journal
    when the batch starts, kept in step as its messages take retry rounds, die or are delivered. A lane
    thread reads and writes only its own patient's entry."""

    def __init__(self, heads: dict[str, str]) -> None:
        self._heads = heads

    def behind(self, item: Item) -> str | None:
        """The message `item` must wait behind, or None when it may go (its lane is open, or it heads it)."""
        head = self._heads.get(item.patient)
        return head if head and head != item.mid else None

    def free(self, item: Item) -> bool:
        """True when `item` heads its lane or its patient has none held: it may be the probe."""
        return self._heads.get(item.patient, item.mid) == item.mid

    def leads(self, item: Item) -> bool:
        """True when `item` heads its patient's lane (others may wait behind it)."""
        return bool(item.patient) and self._heads.get(item.patient) == item.mid

    def take(self, item: Item) -> None:
        """`item` heads its patient's lane from now on (if it has a patient)."""
        if item.patient:
            self._heads[item.patient] = item.mid

    def dead(self, item: Item, *, block: bool) -> None:
        """`item` is a dead letter: under `block` it heads its lane until replayed, else its lane opens."""
        if not item.patient:
            return
        if block:
            self._heads[item.patient] = item.mid
        elif self._heads.get(item.patient) == item.mid:
            self._heads.pop(item.patient)

    def open(self, patient: str) -> None:
        """The patient's lane holds nothing any more."""
        self._heads.pop(patient, None)


class LaneWork(Protocol):
    """What the lanes ask of their destination's deliverer: the writes, and the outcomes journaled and
    settled. Called from lane threads; settling a queue's message only queues it for the consumer."""

    def deliver(self, items: list[Item], heads: Heads) -> None:
        """Write these messages, each free to go, and journal each outcome; raises `Paused` when the circuit
        opens (they are tried again) and `StoreError` when the journal fails."""

    def send(self, item: Item) -> str:
        """The output's write of one message with its fast retries: where it went ('' if already there)."""

    def retry(self, items: list[Item], exc: DeliveryError, heads: Heads) -> None:
        """These failed transiently: each to its next delayed round, or a dead letter."""

    def dead(self, item: Item, exc: DeliveryError, heads: Heads) -> None:
        """A dead letter: journaled, its lane updated, its queue message rejected."""

    def ack(self, item: Item) -> None:
        """Acknowledge the queue's message of `item`, if it came from a queue."""


class Lanes:
    """Keeps one destination's messages in order per patient: runs a batch lane by lane (in parallel on
    `concurrency` threads, or all in one write for an output that takes batches), parks what is behind a
    held lane in the journal, and sends it when the head is delivered. Guarantees a patient's message is
    not written while an earlier one heads their lane, and that what a run leaves (the circuit opened,
    the journal failed) is, on each lane, everything from the interruption on, in order."""

    def __init__(self, destination: str, journal: Journal, work: LaneWork, *, concurrency: int = 1,
                 together: bool = False, block: bool = True, stop: threading.Event | None = None) -> None:
        self.destination = destination
        self.journal = journal
        self.work = work
        self.concurrency = max(1, concurrency)
        self.together = together  # the output writes many messages in one call
        self.block = block  # on_failure: block: a dead letter holds its lane until it is replayed
        self.stop = stop or threading.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"deliver-{destination}")

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def load(self, patients: list[str]) -> Heads:
        """The lanes the journal holds for these patients on this destination."""
        return Heads(self.journal.delivery.lanes(self.destination, patients))

    def run(self, todo: list[Item], heads: Heads) -> list[Item]:
        """Deliver `todo` lane by lane; returns what is left to try again (the circuit opened, or the
        journal failed), in the order given."""
        if self.together:
            return self._together(todo, heads)
        if self.concurrency > 1:
            return self._parallel(todo, heads)
        return self._sequence(todo, heads)

    def _sequence(self, items: list[Item], heads: Heads) -> list[Item]:
        """Each in turn; an interruption leaves it and everything after it."""
        for n, item in enumerate(items):
            try:
                head = heads.behind(item)
                if head:
                    self.hold([(item, head)])
                else:
                    self.work.deliver([item], heads)
            except Paused:
                return items[n:]
            except StoreError as exc:
                self._paused(exc)
                return items[n:]
        return []

    def _parallel(self, todo: list[Item], heads: Heads) -> list[Item]:
        """Patients in parallel, each patient's messages in order: a slow or failing answer for one
        patient does not hold the others up (a FHIR server 30 ms away would otherwise cap a
        destination at ~30 messages/s)."""
        by_patient: dict[str, list[Item]] = {}
        for item in todo:
            by_patient.setdefault(item.patient or item.mid, []).append(item)
        return [i for left in self._pool.map(lambda items: self._sequence(items, heads), by_patient.values())
                for i in left]

    def _together(self, todo: list[Item], heads: Heads) -> list[Item]:
        """Those behind a held lane wait; the others go in one write."""
        go: list[Item] = []
        held: list[tuple[Item, str]] = []
        for item in todo:
            head = heads.behind(item)
            (held.append((item, head)) if head else go.append(item))
        try:
            if held:
                self.hold(held)
            if go:
                self.work.deliver(go, heads)
        except StoreError as exc:
            self._paused(exc)
            return todo
        except Paused:
            return go
        return []

    def _paused(self, exc: StoreError) -> None:
        _log.error("deliver_paused", destination=self.destination, **error_fields(exc))
        self.stop.wait(PAUSE_S)

    def hold(self, held: list[tuple[Item, str]]) -> None:
        """(message, the head it waits behind): each waits in its lane in the journal, acknowledged."""
        self.journal.delivery.wait_behind(self.destination, [(i.mid, head) for i, head in held])
        for item, _ in held:
            self.work.ack(item)

    def drain(self, head: Item, heads: Heads) -> None:
        """The head of a lane is delivered: send the patient's waiting messages in order, then open it. One
        that fails transiently heads the lane in its place; under `block` a dead one holds it."""
        dest = self.destination
        while rows := self.journal.delivery.waiting(dest, head.patient):
            for mid, headers, body in rows:
                item = Item(mid, body, headers)
                heads.take(item)
                try:
                    location = self.work.send(item)
                except TransientDeliveryError as exc:
                    self.journal.delivery.move_lane(dest, head.patient, mid)
                    self.work.retry([item], exc, heads)
                    return
                except PermanentDeliveryError as exc:
                    self.work.dead(item, exc, heads)  # `block`: it heads the lane now
                    if self.block:
                        return
                    continue
                self.journal.outputs.delivered_many(dest, [(mid, location, "")], wait=True)
                metrics.delivered(dest, time.time() - received_epoch(headers, time.time()))
                _log.info("delivered", message_id=mid, destination=dest, after=head.mid)
        self.journal.delivery.release_lane(dest, head.patient, head.mid)
        heads.open(head.patient)
