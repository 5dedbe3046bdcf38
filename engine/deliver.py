"""Deliver: hand each Bundle to its destination, exactly once in effect.

Before a destination writes, the journal is asked whether this (message, destination) is
already delivered, and the destination records where it is about to write; after a crash the
redelivered message is recognised and not written twice. Short glitches are retried in-process
(tenacity); what still fails is journaled as failed and dead-lettered, replayable.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from engine.broker import Delivery
from engine.errors import PermanentDeliveryError, StoreError, TransientDeliveryError
from engine.logs import error_fields
from engine.store import Journal

__all__ = ["Deliverer", "Output"]

_log = structlog.get_logger("wasla.deliver")


class Output(Protocol):
    """An outbound connector. `deliver` returns where the message went, or None if it was already there."""

    id: str

    def deliver(self, message_id: str, body: bytes, journal: Journal) -> str | None: ...

    def close(self) -> None: ...


class Deliverer:
    def __init__(self, output: Output, journal: Journal, *, attempts: int = 3, shared_writer: bool = False) -> None:
        self.output = output
        self.journal = journal
        self.attempts = attempts
        self.shared_writer = shared_writer  # every stage in this process: "delivered" may ride the next commit

    def handle(self, d: Delivery) -> None:
        mid = str(d.headers.get("message_id", ""))
        dest = self.output.id
        try:
            done = self.journal.output(mid, dest)
            if done is not None and done.status == "delivered":
                self.journal.event(mid, "deliver", "duplicate_skipped", {"destination": dest})
                d.ack()
                return
            location = self._deliver(mid, d.body)
            if location is None:
                self.journal.event(mid, "deliver", "duplicate_skipped", {"destination": dest})
                location = (self.journal.output(mid, dest) or done or _Empty()).location
            self.journal.delivered(mid, dest, location, wait=not self.shared_writer)
        except (TransientDeliveryError, PermanentDeliveryError) as exc:
            self._fail(d, mid, exc)
            return
        except StoreError as exc:
            _log.error("deliver_requeued", message_id=mid, destination=dest, **error_fields(exc))
            threading.Event().wait(0.5)
            d.requeue()
            return
        d.ack()
        _log.info("delivered", message_id=mid, destination=dest)

    def _deliver(self, mid: str, body: bytes) -> str | None:
        for attempt in Retrying(retry=retry_if_exception_type(TransientDeliveryError),
                                stop=stop_after_attempt(self.attempts),
                                wait=wait_random_exponential(multiplier=0.2, max=2), reraise=True):
            with attempt:
                return self.output.deliver(mid, body, self.journal)
        return None

    def _fail(self, d: Delivery, mid: str, exc: Exception) -> None:
        kind = "permanent" if isinstance(exc, PermanentDeliveryError) else "transient, retries exhausted"
        try:
            self.journal.failed(mid, "deliver", f"{self.output.id}: {exc} ({kind})", {"destination": self.output.id})
        except StoreError:
            d.requeue()
            return
        d.reject()
        _log.warning("delivery_failed", message_id=mid, destination=self.output.id, kind=kind, **error_fields(exc))


class _Empty:
    location: Any = ""
