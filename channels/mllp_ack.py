"""What an MLLP connection answers to each frame it read, and when.

Original mode: AA once the message is durable, AE when it is not (the journal or broker down),
AR when it is not HL7 v2 (ERR names the segment and field). `ack: after_transform` holds that
ACK until the transform is done: AA when converted, AE with the mapping error when not.
Enhanced mode, when MSH-15/MSH-16 ask for it (and `acknowledgment` is auto): the accept ACK
(CA/CE/CR) once durable, then the application ACK once transformed, on the same connection;
the sender's commit ACK for one of those is journaled but never answered. Batches
(FHS/BHS … BTS/FTS) are split, each message journaled, and answered with one batch of ACKs.

Every ACK sent is noted in the journal with its code and latency (an event nobody waits for).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from engine.connectors.ports import Receipt
from engine.connectors.toolkit import (
    Message,
    batch_ack,
    build_ack,
    enhanced_modes,
    error_fields,
    is_batch,
    message_id,
    split_batch,
    wants,
)
from engine.errors import ParseError

if TYPE_CHECKING:
    from channels.mllp import MLLPInput

__all__ = ["Acknowledger", "ack_control_id", "ack_for"]

_log = structlog.get_logger("wasla.mllp")
_SPLIT_ON_LOOP = 256 * 1024  # larger batches are split on the executor


def ack_control_id(message_id: str) -> str:
    """MSH-10 of our ACKs for a message: its journal id without dashes, cut to MSH-10's 20 characters."""
    return message_id.replace("-", "")[:20]


def ack_for(receipt: Receipt, now: datetime, code: str, text: str = "") -> bytes:
    """The ACK for a receipt with this MSA-1 code; errors carry ERR with the code and location."""
    control = ack_control_id(receipt.message_id)
    if code in ("AA", "CA"):
        return build_ack(receipt.message, code, control_id=control, now=now).encode("utf-8")
    e = receipt.error
    if e is not None and code in ("AR", "CR"):
        return build_ack(receipt.message, code, control_id=control, now=now, text=e.message, error_code=e.code,
                         segment=e.segment, sequence=e.sequence, field=e.field).encode("utf-8")
    return build_ack(receipt.message, code, control_id=control, now=now, text=text or receipt.reason,
                     error_code="207").encode("utf-8")


class Acknowledger:
    """The answers of one MLLP connection: each frame journaled, then ACKed in the mode it asks for.

    Owns the connection's message count, its enhanced-mode application ACKs in flight and the control
    ids of those sent. Guarantees: an ACK goes out only after the intake has answered for its message
    (AA/CA: durable); a batch gets one batch of ACKs, in order; an intake failure is answered AE,
    never raised out of `handle`; `settle` returns once every application ACK owed was sent or timed out.
    """

    def __init__(self, server: MLLPInput, connection: str, peer: str, subject: str,
                 senders: frozenset[str] | None, write: Callable[[bytes], bool]) -> None:
        self.server = server
        self.connection = connection  # the connection's id, in journal events and logs
        self.peer = peer
        self.subject = subject  # the client certificate's commonName, '' without one
        self.senders = senders  # MSH-4 values the client may send for; None: any
        self.write = write  # frames and sends one reply; False when the connection is closing
        self.count = 0
        self.replies: set[asyncio.Task[None]] = set()  # this connection's application ACKs in flight
        self.sent_application_acks: set[str] = set()  # their commit ACKs for these are not answered

    async def handle(self, payload: bytes) -> None:
        """Journal the frame's message (or batch) and answer it; AE when the intake fails."""
        srv = self.server
        try:
            if is_batch(payload):
                await self._batch(payload)
            else:
                await self._message(payload)
        except Exception as exc:  # noqa: BLE001 - the sender gets AE, the operator the error class
            _log.error("mllp_intake_error", channel=srv.channel.id, **error_fields(exc))
            self.write(build_ack(None, "AE", control_id="", now=srv.clock(), error_code="207",
                                 text="message not accepted: journal unavailable, resend later").encode())

    async def settle(self) -> None:
        """Wait for the application ACKs still owed (each bounded by ack_timeout_s)."""
        if self.replies:
            await asyncio.gather(*self.replies, return_exceptions=True)

    async def _message(self, payload: bytes) -> None:
        srv = self.server
        started = asyncio.get_running_loop().time()
        self.count += 1
        receipt = await srv.intake.receive_async(
            srv.channel, payload, peer=self.peer, senders=self.senders, client=self.subject,
            executor=srv.executor, wait_if=srv.waits_for_outcome)
        msg = receipt.message
        if msg is not None and receipt.accepted and self._acknowledges_ours(msg):
            # the sender's commit ACK for one of our application ACKs: journaled (filtered), never answered
            _log.info("mllp_ack_received", channel=srv.channel.id, control_id=msg.control_id)
            return
        modes = enhanced_modes(msg) if srv.acknowledgment == "auto" else None
        waits = receipt.watching is not None
        if modes is not None:
            accept, application = modes
            code = "CA" if receipt.accepted else ("CR" if receipt.error is not None else "CE")
            if wants(accept, code):
                self._answer(receipt, code, ack_for(receipt, srv.clock(), code), started)
            if waits:
                task = asyncio.ensure_future(self._application_ack(receipt, application, started))
                srv.tasks.add(task)
                task.add_done_callback(srv.tasks.discard)
                self.replies.add(task)
                task.add_done_callback(self.replies.discard)
            return
        if waits and srv.after_transform:
            code, reply = await self._after_transform(receipt)
        else:
            code = "AA" if receipt.accepted else ("AR" if receipt.error is not None else "AE")
            reply = ack_for(receipt, srv.clock(), code)
        self._answer(receipt, code, reply, started)

    def _acknowledges_ours(self, msg: Message) -> bool:
        """An ACK whose MSA-2 is the control id of an application ACK we sent on this connection."""
        if not self.sent_application_acks or msg.message_type.split("^")[0] != "ACK":
            return False
        msa = msg.first("MSA")
        ref = msa.field(2).text if msa is not None else ""
        if ref in self.sent_application_acks:
            self.sent_application_acks.discard(ref)
            return True
        return False

    async def _after_transform(self, receipt: Receipt) -> tuple[str, bytes]:
        """Wait for the transform: AA when converted, AE with the mapping error (or the timeout) when not."""
        srv = self.server
        assert receipt.watching is not None
        outcome = await srv.intake.wait_outcome(receipt.message_id, receipt.watching, srv.ack_timeout)
        if outcome.ok:
            return "AA", ack_for(receipt, srv.clock(), "AA")
        return "AE", ack_for(receipt, srv.clock(), "AE", outcome.reason)

    async def _application_ack(self, receipt: Receipt, condition: str, started: float) -> None:
        """Enhanced mode: the application ACK once the transform is done, if MSH-16 asks for this outcome."""
        code, reply = await self._after_transform(receipt)
        if wants(condition, code):
            self.sent_application_acks.add(ack_control_id(receipt.message_id))
            self._answer(receipt, code, reply, started, stage="application_ack")

    def _answer(self, receipt: Receipt, code: str, reply: bytes, started: float, stage: str = "ack") -> None:
        """Send an ACK and journal it: code and latency (an event nobody waits for)."""
        if not self.write(reply):
            return
        latency = (asyncio.get_running_loop().time() - started) * 1000
        with contextlib.suppress(Exception):  # the journal being down already answered AE
            self.server.intake.events.note(receipt.message_id, stage, code, {
                "latency_ms": round(latency, 3), "connection": self.connection,
                **({"duplicate": True} if receipt.duplicate_of else {})})

    async def _batch(self, payload: bytes) -> None:
        """A batch: every message journaled (one group commit for all), one batch of ACKs back, in order."""
        srv = self.server
        started = asyncio.get_running_loop().time()
        try:
            if len(payload) > _SPLIT_ON_LOOP:  # linear, but ~0.7 s a MB of short lines: not on the loop
                batch = await asyncio.get_running_loop().run_in_executor(srv.executor, split_batch, payload)
            else:
                batch = split_batch(payload)
        except ParseError as exc:
            receipt = await srv.intake.receive_async(srv.channel, payload, peer=self.peer, client=self.subject,
                                                     executor=srv.executor)  # journaled as failed: not HL7 v2
            self._answer(receipt, "AR", build_ack(None, "AR", control_id=ack_control_id(receipt.message_id),
                                                  now=srv.clock(), text=exc.message, error_code=exc.code,
                                                  segment=exc.segment).encode(), started)
            return
        self.count += len(batch.messages)
        receipts = await asyncio.gather(*(srv.intake.receive_async(
            srv.channel, raw, peer=self.peer, senders=self.senders, client=self.subject, executor=srv.executor)
            for raw in batch.messages))
        now = srv.clock()
        acks = []
        for r in receipts:
            code = "AA" if r.accepted else ("AR" if r.error is not None else "AE")
            acks.append((r, code, ack_for(r, now, code).decode("utf-8")))
        control = ack_control_id(receipts[0].message_id if receipts else message_id())
        reply = batch_ack(batch, [a for _, _, a in acks], control_id=control, now=now).encode("utf-8")
        if not self.write(reply):
            return
        latency = round((asyncio.get_running_loop().time() - started) * 1000, 3)
        for r, code, _ in acks:
            with contextlib.suppress(Exception):
                srv.intake.events.note(r.message_id, "ack", code, {"latency_ms": latency,
                                                                   "connection": self.connection, "batch": True})
        _log.info("mllp_batch", channel=srv.channel.id, connection=self.connection, messages=len(receipts),
                  declared=batch.declared)
