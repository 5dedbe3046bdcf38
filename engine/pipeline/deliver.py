"""Deliver: hand each Bundle to its destination, exactly once in effect, in order per patient.

Before a destination writes, the journal is asked whether this (message, destination) is
already delivered, and the destination records where it is about to write; after a crash the
redelivered message is recognised and not written twice.

What fails goes three ways:
- transient (timeout, connection refused, 408/429/5xx, full disk): a few jittered tries in
  process (tenacity), then a round in a broker delay queue (5 s, 30 s, 2 min … by default)
  while the patient's lane holds their later messages (`waiting`); when it is delivered the
  waiting ones follow, oldest first. After `max_age_h` it is a dead letter.
- permanent (4xx other than 408/429, a refusing ACK): a dead letter at once, the destination's
  answer kept; with `on_failure: block` the patient's later messages wait until it is replayed.
- the destination is down (`circuit_breaker.failures` transient failures in a row): the circuit
  opens, the batch goes back to its queue untouched, and one probe is tried now and then.

The order per patient is kept by `engine.pipeline.lanes`, the retry policy is `engine.pipeline.retry`;
the `Deliverer` here writes through the output and journals and settles each outcome.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol, TypeVar, runtime_checkable

import structlog

from engine import metrics
from engine.config import DestinationConfig
from engine.connectors.capabilities import Capabilities
from engine.connectors.ports import OutputLedger
from engine.errors import (
    BrokerError,
    DeliveryError,
    PermanentDeliveryError,
    StoreError,
    TransientDeliveryError,
)
from engine.logs import error_fields
from engine.pipeline.breaker import Breaker
from engine.pipeline.journal_ports import JournalOutputLedger
from engine.pipeline.lanes import Heads, Item, Lanes, Paused
from engine.pipeline.retry import PAUSE_S, RetryPolicy, Round
from engine.store import Journal, OutputRow
from engine.transport import Delivery, Transport, hold, received_epoch

__all__ = ["BatchOutput", "Deliverer", "Output"]

_log = structlog.get_logger("wasla.deliver")
_T = TypeVar("_T")


class Output(Protocol):
    """An outbound connector. `deliver` returns where the message went, or None if it was already there.

    It declares what it can do in `capabilities` (a class attribute, or set in `__init__` from its
    options); with `takes_headers`, `deliver` also takes `headers=`, the message's pipeline headers.
    """

    id: str
    capabilities: Capabilities

    def deliver(self, message_id: str, body: bytes, journal: OutputLedger) -> str | None: ...

    def close(self) -> None: ...


@runtime_checkable
class BatchOutput(Output, Protocol):
    """A connector that takes many messages in one write (one fsync, one request).

    Items are (message id, body, the output's journal row or None), the row read once by the
    deliverer for the whole batch. `deliver_batch` returns, per item and in order, the location,
    None (already there, at the row's location), or the PermanentDeliveryError of that item
    alone; it raises TransientDeliveryError when the whole write must be retried.
    """

    def deliver_batch(self, items: list[tuple[str, bytes, OutputRow | None]],
                      journal: OutputLedger) -> list[str | None | DeliveryError]: ...


class Deliverer:
    """Delivers one destination's batches: checks the journal for what is already delivered, writes
    through the output with fast retries, then delayed retry rounds or a dead letter, behind the
    destination's circuit breaker. Its `Lanes` keep each patient's messages in order (on `concurrency`
    threads); it is their `LaneWork`: it writes, journals each outcome and settles the queue's messages on
    the consumer's thread. Never hands an interrupted batch back to the queue (order would break).
    """

    def __init__(self, output: Output, journal: Journal, broker: Transport | None = None,
                 config: DestinationConfig | None = None, *, attempts: int | None = None,
                 shared_writer: bool = False, stop: threading.Event | None = None) -> None:
        self.output = output
        self.journal = journal
        self.ledger = JournalOutputLedger(journal)  # what the output may read and record, nothing else
        self.broker = broker
        self.config = config
        self.policy = RetryPolicy.of(config.retry if config is not None else None, attempts)
        self.block = (config.on_failure if config is not None else "block") == "block"
        b = config.breaker if config is not None else None
        self.breaker = Breaker(output.id, b.failures if b else 5, b.probe_max_s if b else 15.0)
        self.shared_writer = shared_writer  # every stage in this process: "delivered" may ride the next commit
        self.stop = stop or threading.Event()
        self.capabilities = output.capabilities
        self.concurrency = max(1, self.capabilities.concurrency)
        self.lanes = Lanes(output.id, journal, self, concurrency=self.concurrency,
                           together=isinstance(output, BatchOutput), block=self.block, stop=self.stop)
        self._queued: list[tuple[Delivery, str]] = []  # list.append is atomic: lane threads add, the consumer settles

    def close(self) -> None:
        self.lanes.close()

    # -- a batch from the queue -----------------------------------------------------------------
    def handle(self, batch: list[Delivery]) -> None:
        dest = self.output.id
        mine: list[Item] = []
        for d in batch:
            routed = str(d.headers.get("destinations", dest))
            if dest not in routed.split(","):  # the broker's bindings are coarser than the route
                d.ack()
                continue
            mine.append(Item(str(d.headers.get("message_id", "")), d.body, d.headers, d))
        if not mine:
            return
        try:
            self._handle(mine)
        finally:
            self._settle_queued()

    def _handle(self, mine: list[Item]) -> None:
        """Deliver the batch. What the circuit breaker or a journal fault interrupts is kept and tried
        again here, never put back in the queue: messages behind it in the queue (already prefetched)
        would overtake it and break the patient's order. Consumption pauses meanwhile."""
        dest = self.output.id
        keepalive = mine[0].delivery
        while not self.stop.is_set():
            try:
                known = self.journal.outputs.many([i.mid for i in mine], dest)
                heads = self.lanes.load([i.patient for i in mine])
                break
            except StoreError as exc:
                self._pause(exc, keepalive)
        else:
            self._hand_back(mine)
            return
        todo: list[Item] = []
        taken: set[str] = set()
        for item in mine:
            item.prior = known.get(item.mid)
            if (item.prior is not None and item.prior.status == "delivered") or item.mid in taken:
                # A second copy in one batch (intake's recovery re-sends what is unfinished, and the
                # original may still be queued) is skipped: written again, it would land after the
                # patient's later messages and leave the patient on an older version.
                self.journal.messages.note(item.mid, "deliver", "duplicate_skipped", {"destination": dest})
                self.ack(item)
            else:
                taken.add(item.mid)
                todo.append(item)
        while todo:
            if self.stop.is_set():
                self._hand_back(todo)
                return
            if self.breaker.is_open:
                probe = next((i for i in todo if heads.free(i)), None)
                if probe is not None:
                    self._wait_probe(keepalive)
                    try:
                        answered = self._probe(probe, heads)
                    except StoreError as exc:
                        self._pause(exc, keepalive)
                        continue
                    if not answered:
                        continue
                    todo = [i for i in todo if i is not probe]
            order = {id(i): n for n, i in enumerate(todo)}
            todo = sorted(self.lanes.run(todo, heads), key=lambda i: order[id(i)])

    def _pause(self, exc: StoreError, keepalive: Delivery | None) -> None:
        _log.error("deliver_paused", destination=self.output.id, **error_fields(exc))
        hold(PAUSE_S, self.stop, keepalive)

    def _wait_probe(self, keepalive: Delivery | None) -> None:
        hold(self.breaker.probe_in(), self.stop, keepalive)

    def _probe(self, item: Item, heads: Heads) -> bool:
        """One try while the circuit is open; True if the destination answered (delivered or refused)."""
        try:
            result = self.send(item, attempts=1)
        except TransientDeliveryError:
            self.breaker.probe_failed()
            return False
        except PermanentDeliveryError as exc:
            self.breaker.success()
            self.dead(item, exc, heads)
            return True
        self._delivered([(item, result)], heads)
        return True

    # -- the writes (LaneWork) ----------------------------------------------------------------------
    def deliver(self, items: list[Item], heads: Heads) -> None:
        """Write these messages, each free to go on its lane: in one write for an output that takes
        batches, else one at a time; each outcome journaled. Raises `Paused` when the circuit opens."""
        if isinstance(self.output, BatchOutput):
            self._write_batch(items, heads)
            return
        for item in items:
            self._write_one(item, heads)

    def _write_one(self, item: Item, heads: Heads) -> None:
        try:
            result = self.send(item)
        except TransientDeliveryError as exc:
            if self.breaker.is_open:
                raise Paused from exc
            self.retry([item], exc, heads)
            return
        except PermanentDeliveryError as exc:
            self.dead(item, exc, heads)
            return
        self._delivered([(item, result)], heads)

    def send(self, item: Item, attempts: int | None = None) -> str:
        """The output's write of one message with its fast retries (`attempts`, else the policy's):
        where it went ('' if it was already there)."""
        def once() -> str | None:
            if self.capabilities.takes_headers:  # AMQP: the routing key and properties
                return self.output.deliver(item.mid, item.body, self.ledger, headers=item.headers)  # type: ignore[call-arg]
            return self.output.deliver(item.mid, item.body, self.ledger)

        location: str | None = None
        for attempt in self.policy.tries(lambda: self.breaker.is_open, attempts):
            with attempt:
                location = self._guarded(once, message_id=item.mid)
        return self._location(item, location)

    def _guarded(self, write: Callable[[], _T], **where: str) -> _T:
        """One call into the connector, counted by the circuit breaker: a transient failure, or a
        connector's bug (raised as a transient failure), counts against it; a success closes it."""
        try:
            result = write()
        except TransientDeliveryError:
            self.breaker.failure()
            raise
        except (DeliveryError, StoreError):
            raise
        except Exception as exc:  # noqa: BLE001 - a connector's bug must not stop the destination's thread
            _log.error("connector_error", **where, destination=self.output.id, **error_fields(exc))
            self.breaker.failure()
            raise TransientDeliveryError(f"unexpected {exc.__class__.__name__} in the connector") from exc
        self.breaker.success()
        return result

    def _location(self, item: Item, result: str | None) -> str:
        if result is not None:
            return result
        # already written before a crash: recognised, not written twice
        self.journal.messages.note(item.mid, "deliver", "duplicate_skipped", {"destination": self.output.id})
        prior = item.prior or self.journal.outputs.get(item.mid, self.output.id)
        return prior.location if prior is not None else ""

    def _write_batch(self, go: list[Item], heads: Heads) -> None:
        """Many messages in one write (NDJSON): retried whole; each item's own refusal is its dead letter."""
        output = self.output
        assert isinstance(output, BatchOutput)
        known = {i.mid: i.prior for i in go if i.prior is not None}
        results: list[str | None | DeliveryError] = []
        try:
            for attempt in self.policy.tries(lambda: self.breaker.is_open):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:  # a failed try may have recorded intents
                        known = self.journal.outputs.many([i.mid for i in go], output.id)
                    items = [(i.mid, i.body, known.get(i.mid)) for i in go]
                    results = self._guarded(partial(output.deliver_batch, items, self.ledger))
        except TransientDeliveryError as exc:
            if self.breaker.is_open:
                raise Paused from exc
            self.retry(go, exc, heads)
            return
        done: list[tuple[Item, str]] = []
        for item, result in zip(go, results, strict=True):
            if isinstance(result, DeliveryError):
                self.dead(item, result, heads)
            else:
                item.prior = known.get(item.mid)
                done.append((item, self._location(item, result)))
        if done:
            self._delivered(done, heads)

    # -- outcomes ---------------------------------------------------------------------------------
    def _delivered(self, done: list[tuple[Item, str]], heads: Heads) -> None:
        """Journal what was delivered in one commit, acknowledge it, then send what waited behind it."""
        dest = self.output.id
        self.journal.outputs.delivered_many(dest, [(i.mid, loc, "") for i, loc in done], wait=not self.shared_writer)
        now = time.time()
        for item, _ in done:
            self.ack(item)
            metrics.delivered(dest, now - received_epoch(item.headers, now))
            _log.info("delivered", message_id=item.mid, destination=dest)
        for item, _ in done:
            if heads.leads(item):
                self.lanes.drain(item, heads)

    def retry(self, items: list[Item], exc: DeliveryError, heads: Heads) -> None:
        """Send each to its next delayed round (a dead letter when the policy has none left for it, or
        there is no broker to hold it); the first of each patient heads their lane, the others wait
        behind it."""
        rounds: list[tuple[Item, Round]] = []
        behind: list[tuple[Item, str]] = []
        for item in items:
            head = heads.behind(item)
            if head:
                behind.append((item, head))
                continue
            next_round = self.policy.next_round(item.headers) if self.broker is not None else None
            if next_round is None:
                self.dead(item, self.policy.exhausted(exc, item.headers), heads)
                continue
            rounds.append((item, next_round))
            heads.take(item)
        if behind:
            self.lanes.hold(behind)
        if not rounds:
            return
        self.journal.delivery.retrying(self.output.id,
                                       [(i.mid, i.patient, r.level, r.delay_s, str(exc)) for i, r in rounds])
        for item, r in rounds:
            try:
                assert self.broker is not None
                self.broker.publish_retry(item.body, destination=self.output.id, level=r.queue,
                                          patient_key=item.patient, message_id=item.mid,
                                          headers=r.headers(item.headers))
            except BrokerError as err:
                _log.error("retry_publish_failed", message_id=item.mid, destination=self.output.id,
                           **error_fields(err))
                self._requeue([item])
                continue
            self.ack(item)
        metrics.retried(self.output.id, len(rounds))
        _log.info("delivery_retrying", destination=self.output.id, messages=len(rounds), **error_fields(exc))

    def dead(self, item: Item, exc: DeliveryError, heads: Heads) -> None:
        """A dead letter: journaled with the destination's answer, its lane held under `block`, its queue
        message rejected (one sent from its lane goes to the dead-letter queue)."""
        dest = self.output.id
        kind = "permanent" if isinstance(exc, PermanentDeliveryError) else "transient, retries exhausted"
        self.journal.delivery.dead(dest, item.mid, item.patient, f"{dest}: {exc} ({kind})", exc.response,
                                   hold_lane=self.block)
        metrics.dead(dest)
        metrics.failed(str(item.headers.get("channel", "")), "deliver")
        heads.dead(item, block=self.block)
        if item.delivery is not None:
            self._queued.append((item.delivery, "reject"))
        elif self.broker is not None:
            with contextlib.suppress(BrokerError):  # the journal holds it as dead either way: replayable
                self.broker.publish_dead(item.body, destination=dest, headers=item.headers)
        _log.warning("delivery_failed", message_id=item.mid, destination=dest, kind=kind, **error_fields(exc))

    # -- settling the queue's messages --------------------------------------------------------------
    def ack(self, item: Item) -> None:
        """Acknowledge the queue's message of `item` (none for one sent from its lane), on the consumer's thread."""
        if item.delivery is not None:
            self._queued.append((item.delivery, "ack"))

    def _requeue(self, items: list[Item]) -> None:
        for item in items:
            if item.delivery is not None:
                self._queued.append((item.delivery, "requeue"))

    def _hand_back(self, items: list[Item]) -> None:
        """Shutting down: leave them unsettled. The consumer closes its channel as it goes, and the
        broker gives everything it held to the next consumer in order; requeueing them one by one
        here would put them behind what this consumer still holds."""
        _log.info("deliver_handed_back", destination=self.output.id, messages=len(items))

    def _settle_queued(self) -> None:
        """Acknowledge, requeue or reject on the consumer's thread: a broker channel is not thread-safe."""
        queued, self._queued = self._queued, []
        for delivery, action in queued:
            getattr(delivery, action)()
