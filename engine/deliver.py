"""Deliver: hand each Bundle to its destination, exactly once in effect.

Before a destination writes, the journal is asked whether this (message, destination) is
already delivered, and the destination records where it is about to write; after a crash the
redelivered message is recognised and not written twice. Short glitches are retried in-process
(tenacity); what still fails is journaled as failed and dead-lettered, replayable.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from engine.broker import Delivery
from engine.errors import DeliveryError, PermanentDeliveryError, StoreError, TransientDeliveryError
from engine.logs import error_fields
from engine.store import Journal, OutputRow

__all__ = ["BatchOutput", "Deliverer", "Output"]

_log = structlog.get_logger("wasla.deliver")


class Output(Protocol):
    """An outbound connector. `deliver` returns where the message went, or None if it was already there."""

    id: str

    def deliver(self, message_id: str, body: bytes, journal: Journal) -> str | None: ...

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
                      journal: Journal) -> list[str | None | DeliveryError]: ...


class Deliverer:
    def __init__(self, output: Output, journal: Journal, *, attempts: int = 3, shared_writer: bool = False) -> None:
        self.output = output
        self.journal = journal
        self.attempts = attempts
        self.shared_writer = shared_writer  # every stage in this process: "delivered" may ride the next commit

    def handle(self, batch: list[Delivery]) -> None:
        dest = self.output.id
        mids = [str(d.headers.get("message_id", "")) for d in batch]
        try:
            known = self.journal.outputs(mids, dest)
        except StoreError as exc:
            self._requeue(batch, exc)
            return
        todo: list[tuple[Delivery, str]] = []
        for d, mid in zip(batch, mids, strict=True):
            prior = known.get(mid)
            if prior is not None and prior.status == "delivered":
                self.journal.note(mid, "deliver", "duplicate_skipped", {"destination": dest})
                d.ack()
            else:
                todo.append((d, mid))
        if not todo:
            return
        if isinstance(self.output, BatchOutput):
            self._deliver_batch(todo, known)
        else:
            for d, mid in todo:
                self._deliver_one(d, mid, known.get(mid))

    def _retrying(self) -> Retrying:
        return Retrying(retry=retry_if_exception_type(TransientDeliveryError), stop=stop_after_attempt(self.attempts),
                        wait=wait_random_exponential(multiplier=0.2, max=2), reraise=True)

    def _deliver_batch(self, todo: list[tuple[Delivery, str]], known: dict[str, OutputRow]) -> None:
        output = self.output
        assert isinstance(output, BatchOutput)
        try:
            results: list[str | None | DeliveryError] = []
            for attempt in self._retrying():
                with attempt:
                    if attempt.retry_state.attempt_number > 1:  # a failed try may have recorded intents
                        known = self.journal.outputs([mid for _, mid in todo], self.output.id)
                    results = output.deliver_batch([(mid, d.body, known.get(mid)) for d, mid in todo], self.journal)
        except TransientDeliveryError as exc:
            for d, mid in todo:
                self._fail(d, mid, exc)
            return
        except StoreError as exc:
            self._requeue([d for d, _ in todo], exc)
            return
        self._settle(list(zip(todo, results, strict=True)), known)

    def _deliver_one(self, d: Delivery, mid: str, prior: OutputRow | None) -> None:
        try:
            location: str | None | DeliveryError = None
            for attempt in self._retrying():
                with attempt:
                    location = self.output.deliver(mid, d.body, self.journal)
        except (TransientDeliveryError, PermanentDeliveryError) as exc:
            location = exc
        except StoreError as exc:
            self._requeue([d], exc)
            return
        self._settle([((d, mid), location)], {mid: prior} if prior is not None else {})

    def _settle(self, outcomes: list[tuple[tuple[Delivery, str], str | None | DeliveryError]],
                known: dict[str, OutputRow]) -> None:
        """Journal what was delivered in one commit, fail what was refused, then acknowledge."""
        dest = self.output.id
        done: list[tuple[Delivery, str, str]] = []
        for (d, mid), result in outcomes:
            if isinstance(result, DeliveryError):
                self._fail(d, mid, result)
                continue
            if result is None:  # already written before a crash: recognised, not written twice
                self.journal.note(mid, "deliver", "duplicate_skipped", {"destination": dest})
                prior = known.get(mid) or self.journal.output(mid, dest)  # the output's own record, if it made one
                result = prior.location if prior is not None else ""
            done.append((d, mid, result))
        if not done:
            return
        try:
            self.journal.delivered_many(dest, [(mid, loc, "") for _, mid, loc in done], wait=not self.shared_writer)
        except StoreError as exc:
            self._requeue([d for d, _, _ in done], exc)
            return
        for d, mid, _ in done:
            d.ack()
            _log.info("delivered", message_id=mid, destination=dest)

    def _requeue(self, batch: list[Delivery], exc: StoreError) -> None:
        _log.error("deliver_requeued", destination=self.output.id, messages=len(batch), **error_fields(exc))
        threading.Event().wait(0.5)
        for d in batch:
            d.requeue()

    def _fail(self, d: Delivery, mid: str, exc: Exception) -> None:
        kind = "permanent" if isinstance(exc, PermanentDeliveryError) else "transient, retries exhausted"
        try:
            self.journal.failed(mid, "deliver", f"{self.output.id}: {exc} ({kind})", {"destination": self.output.id})
        except StoreError:
            d.requeue()
            return
        d.reject()
        _log.warning("delivery_failed", message_id=mid, destination=self.output.id, kind=kind, **error_fields(exc))

