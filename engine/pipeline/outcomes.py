"""What became of a message after intake, for the channels whose answer waits for it.

An MLLP channel with `ack: after_transform`, or a sender asking for an application ACK in
enhanced mode (MSH-16), answers only once the message is transformed or has failed. When the
transform role runs in the same process it reports here and the waiting channel wakes at
once; when it runs elsewhere (RabbitMQ deployments) the channel polls the journal instead.
"""

from __future__ import annotations

import asyncio
import threading

from engine.store import Journal
from engine.types import Outcome, Status

__all__ = ["Outcome", "Outcomes"]


class Outcomes:
    """What became of a message after intake, for channels whose answer waits for it. Owns the
    waiting futures when the transform runs in this process (`local`, woken by `settle` from any
    thread, under a lock); otherwise `wait` polls the journal every `poll_s`.
    """

    def __init__(self, journal: Journal, *, local: bool, poll_s: float = 0.02) -> None:
        self.journal = journal
        self.local = local  # the transform role runs in this process and calls settle()
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Outcome]]] = {}

    def watch(self, message_id: str) -> asyncio.Future[Outcome]:
        """Start watching before the message is published, so a fast transform cannot be missed."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        if self.local:
            with self._lock:
                self._waiting[message_id] = (loop, fut)
        return fut

    def settle(self, message_id: str, status: str, reason: str = "") -> None:
        """Called by the transform role (any thread) once the message is transformed or failed."""
        with self._lock:
            entry = self._waiting.pop(message_id, None)
        if entry is not None:
            loop, fut = entry
            loop.call_soon_threadsafe(_resolve, fut, Outcome(status, reason))

    def forget(self, message_id: str) -> None:
        with self._lock:
            self._waiting.pop(message_id, None)

    async def wait(self, message_id: str, fut: asyncio.Future[Outcome], timeout: float) -> Outcome:
        try:
            if self.local:
                return await asyncio.wait_for(fut, timeout)
            return await asyncio.wait_for(self._poll(message_id), timeout)
        except TimeoutError:
            return Outcome("timeout", f"not transformed within {timeout:g} s; the message is journaled and"
                                      " will be processed")
        finally:
            self.forget(message_id)

    async def _poll(self, message_id: str) -> Outcome:
        loop = asyncio.get_running_loop()
        while True:
            row = await loop.run_in_executor(None, self.journal.messages.get, message_id)
            if row is not None and row.status != Status.RECEIVED:
                if row.status == Status.FAILED:
                    return Outcome(Status.FAILED, row.reason)
                if row.status in (Status.PARKED, Status.FILTERED):
                    return Outcome(row.status, row.reason)
                return Outcome(Status.TRANSFORMED)
            await asyncio.sleep(self.poll_s)


def _resolve(fut: asyncio.Future[Outcome], outcome: Outcome) -> None:
    if not fut.done():
        fut.set_result(outcome)
