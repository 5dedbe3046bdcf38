"""Intake: make an inbound message durable, then say so.

Order matters and is the product's first promise: journal the exact bytes (group commit),
publish to the pipeline (confirmed on RabbitMQ), and only then return — the channel answers
AA / 202 after this returns `accepted`. Bytes that cannot be read are journaled as failed
with the reason, so nothing a sender sent is ever lost, even garbage.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from engine import metrics
from engine.config import ChannelConfig
from engine.connectors.ports import Receipt
from engine.errors import BrokerError, ParseError
from engine.fingerprint import content_fingerprint
from engine.formats import Formats, Mappings
from engine.hl7v2.er7 import Message
from engine.ids import message_id
from engine.logs import error_fields
from engine.pipeline.intake_ports import IntakePorts
from engine.pipeline.outcomes import Outcomes
from engine.store import Journal
from engine.store.journal import KeyMatch
from engine.store.writer import Work
from engine.transport import Transport
from engine.types import Inbound, Status

__all__ = ["Intake", "Receipt"]

_log = structlog.get_logger("wasla.intake")


@dataclass(frozen=True)
class _Plan:
    """A message admitted by intake: its journal write (not yet committed), and either a refusal or what to publish."""

    work: Work
    receipt: Receipt | None
    inbound: Inbound | None = None
    message: Message | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Intake(IntakePorts):
    """Admits inbound messages: journaled, then queued, then a Receipt (`engine.connectors.ports.InputPorts`).

    Owns the order of that promise (module docstring); the ports an input needs beside it come from
    `IntakePorts`.
    """

    def __init__(self, journal: Journal, broker: Transport, converter: Formats | Mappings,
                 clock: Callable[[], datetime] = _now, *, outcomes: Outcomes | None = None) -> None:
        self.outcomes = outcomes or Outcomes(journal, local=False)  # polls the journal when transform runs elsewhere
        self.journal = journal
        self.broker = broker
        # the input formats: how a message is read and its patient key found (the mappings, for the HL7 v2 one)
        self.formats = converter if isinstance(converter, Formats) else Formats(converter)
        assert self.formats.converter is not None, "an intake reads with the mappings"
        self.converter = self.formats.converter  # a channel's own use of the mappings (dry runs, CSV maps)
        self.clock = clock

    def receive(self, channel: ChannelConfig, raw: bytes, *, peer: str = "", senders: frozenset[str] | None = None,
                client: str = "") -> Receipt:
        """Journal, publish, and report. Blocking: for callers on a worker thread."""
        plan = self.admit(channel, raw, peer=peer, senders=senders, client=client)
        return self.finish(plan, self.journal.db.commit(plan.work))

    def reject_records(self, channel: ChannelConfig, records: list[tuple[bytes, str, str]], *, message_type: str,
                       sender: str, detail: dict[str, Any] | None = None) -> None:
        """Records a file channel could not use (raw, control id, reason), journaled as failed in one commit:
        visible with their reason, never queued."""
        works = [self.journal.messages.receive_work(
            Inbound(message_id(), channel.id, self.clock(), raw, message_type, control_id, sender,
                    status=Status.FAILED, reason=reason), {**(detail or {}), "reason": reason})
            for raw, control_id, reason in records]
        self.journal.db.commit(lambda cur: [w(cur) for w in works])

    def receive_records(self, channel: ChannelConfig, records: list[tuple[bytes, str]], *, message_type: str,
                        sender: str, detail: dict[str, Any] | None = None) -> list[Receipt]:
        """Records that are not HL7 v2 (groups of CSV rows: raw, control id), many in one journal commit,
        then queued: a file channel's rows go in by the hundred, not one durable commit each. No
        duplicate check here: file channels recognise a file taken in twice by its bytes."""
        plans = []
        for raw, control_id in records:
            inbound = Inbound(message_id(), channel.id, self.clock(), raw, message_type, control_id, sender)
            plans.append(_Plan(self.journal.messages.receive_work(inbound, detail), None, inbound, None))
        works = [p.work for p in plans]
        self.journal.db.commit(lambda cur: [w(cur) for w in works])  # no duplicate check: never an original
        receipts = []
        for p in plans:
            published = self._publish(p)
            if published is not None:
                receipts.append(self._answer(p, None, published))  # failed, logged, with the reason
            else:
                metrics.received(channel.id)
                receipts.append(Receipt(p.inbound.id, None, True))  # type: ignore[union-attr]  # batch plans all have one
        _log.info("received_batch", channel=channel.id, type=message_type, records=len(plans))
        return receipts

    async def receive_async(self, channel: ChannelConfig, raw: bytes, *, peer: str = "",
                            senders: frozenset[str] | None = None, client: str = "",
                            executor: Executor | None = None,
                            wait_if: Callable[[Message], bool] | None = None) -> Receipt:
        """The same from an event loop: the journal commit runs on the loop's thread, grouped with
        every other message of this loop iteration (`Journal.commit_async`).

        On the in-memory transport the publish (a queue put) follows the commit. On RabbitMQ it
        runs on `executor` at the same time as the commit, both waits overlapping (`_commit_and_publish`).
        With `wait_if`, the receipt carries a future for the
        message's transform outcome when `wait_if(message)` says so (registered before the publish,
        so it cannot be missed; messages that need no outcome register nothing).
        """
        plan = self.admit(channel, raw, peer=peer, senders=senders, client=client)
        return await self._complete(plan, executor, wait_if)

    async def receive_fhir_async(self, channel: ChannelConfig, raw: bytes, *, resource_type: str, control_id: str,
                                 peer: str = "", client: str = "", executor: Executor | None = None) -> Receipt:
        """A FHIR resource or Bundle a channel has already validated: journaled and queued like a message.

        Its type is `FHIR^<resourceType>`, its control id the Bundle's identifier (the duplicate check's
        key, as MSH-10 is for HL7 v2; none when it has no identifier) and its sender the client.
        """
        mid, now = message_id(), self.clock()
        window = int(channel.options.duplicate_window_s)
        inbound = Inbound(mid, channel.id, now, raw, f"FHIR^{resource_type}", control_id, client)
        work = self.journal.messages.receive_work(
            inbound, {"peer": peer, "client": client} if peer or client else None,
            duplicate_since=now - timedelta(seconds=window) if window > 0 else None,
            duplicate_detail={"peer": peer, "at": now.isoformat()}, fingerprint=content_fingerprint(raw))
        return await self._complete(_Plan(work, None, inbound, None), executor, None)

    async def _complete(self, plan: _Plan, executor: Executor | None,
                        wait_if: Callable[[Message], bool] | None) -> Receipt:
        watch = self.outcomes if (wait_if is not None and plan.inbound is not None and plan.message is not None
                                  and wait_if(plan.message)) else None
        watching = watch.watch(plan.inbound.id) if watch is not None and plan.inbound is not None else None
        try:
            if not self.broker.capabilities.durable_publish or plan.receipt is not None:
                receipt = self.finish(plan, await self.journal.db.commit_async(plan.work))
            else:
                receipt = await self._commit_and_publish(plan, executor)
        except BaseException:
            if watch is not None and plan.inbound is not None:
                watch.forget(plan.inbound.id)
            raise
        if watching is not None and watch is not None and plan.inbound is not None:
            if not receipt.accepted or receipt.duplicate_of:
                watch.forget(plan.inbound.id)
                return receipt
            return dataclasses.replace(receipt, watching=watching)
        return receipt

    def admit(self, channel: ChannelConfig, raw: bytes, *, peer: str = "", senders: frozenset[str] | None = None,
              client: str = "") -> _Plan:
        """Read the message and prepare its journal write; cheap and non-blocking.

        `senders`, when given, are the MSH-4 facilities the authenticated client may send for
        (a TLS certificate bound to facilities); any other MSH-4 is refused and audited.
        """
        mid, now = message_id(), self.clock()
        try:
            msg, flags = self.formats.hl7v2.read_flagged(raw, channel)  # ENCODING_MISMATCH, NUL_REMOVED
        except ParseError as err:
            work = self.journal.messages.receive_work(
                Inbound(mid, channel.id, now, raw, status=Status.FAILED, reason=err.message),
                {"reason": err.message, "segment": err.segment, "field": err.field, "peer": peer})
            _log.warning("message_unreadable", message_id=mid, channel=channel.id, code=err.code, size=len(raw))
            return _Plan(work, Receipt(mid, None, False, err, err.message))
        if senders is not None and msg.sending_facility not in senders:
            reason = "sending facility (MSH-4) not authorised for this client certificate"
            work = self.journal.messages.receive_work(
                Inbound(mid, channel.id, now, raw, msg.message_type, msg.control_id, msg.sending_facility,
                        status=Status.FAILED, reason=reason),
                {"reason": reason, "audit": "sender_mismatch", "client": client, "peer": peer})
            _log.warning("sender_mismatch", message_id=mid, channel=channel.id, client=client)
            return _Plan(work, Receipt(mid, msg, False, ParseError(reason, segment="MSH", sequence=1, field=4,
                                                                  code="207"), reason))
        if msg.message_type.split("^")[0] == "ACK":
            reason = "an acknowledgment (MSH-9 ACK): recorded, nothing to transform"
            work = self.journal.messages.receive_work(
                Inbound(mid, channel.id, now, raw, msg.message_type, msg.control_id, msg.sending_facility,
                        status=Status.FILTERED, reason=reason), {"reason": reason, "peer": peer})
            return _Plan(work, Receipt(mid, msg, True, reason=reason))
        window = int(channel.options.duplicate_window_s)
        patient_key = self._patient_key(channel, msg)
        inbound = Inbound(mid, channel.id, now, raw, msg.message_type, msg.control_id, msg.sending_facility,
                          patient_key)
        work = self.journal.messages.receive_work(
            inbound, {"peer": peer, "flags": list(flags)} if flags else ({"peer": peer} if peer else None),
            duplicate_since=now - timedelta(seconds=window) if window > 0 else None,
            duplicate_detail={"peer": peer, "at": now.isoformat()}, fingerprint=content_fingerprint(raw))
        return _Plan(work, None, inbound, msg)

    async def _commit_and_publish(self, plan: _Plan, executor: Executor | None) -> Receipt:
        """RabbitMQ: publish and wait for its confirm on `executor` while the journal commits on the loop.

        The sender hears AA only when both succeeded. A publish whose commit then fails, or finds
        the message is a duplicate, is void: the transform drops what the journal does not hold
        (`Transformer` checks before converting), so nothing is processed twice.
        """
        published = asyncio.get_running_loop().run_in_executor(executor, self._publish, plan)
        try:
            seen = await self.journal.db.commit_async(plan.work)
        finally:
            error = await published
        return self._answer(plan, seen, error)

    def _publish(self, plan: _Plan) -> BrokerError | None:
        inbound = plan.inbound
        assert inbound is not None
        try:
            self.broker.publish_in(inbound.raw, message_id=inbound.id, channel=inbound.channel,
                                   patient_key=inbound.patient_key,
                                   headers={"received_at": inbound.received_at.isoformat(),
                                            "message_type": inbound.message_type})
        except BrokerError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - any failed publish: the message is failed, never left received
            return BrokerError(f"publish failed: {exc.__class__.__name__}")
        return None

    def finish(self, plan: _Plan, seen: KeyMatch | None) -> Receipt:
        """After the journal commit: report a refusal or a duplicate, or publish and accept."""
        duplicate = seen is not None and seen.same_content
        published = self._publish(plan) if plan.receipt is None and not duplicate else None
        return self._answer(plan, seen, published)

    def _answer(self, plan: _Plan, seen: KeyMatch | None, published: BrokerError | None) -> Receipt:
        """The receipt, once the commit (`seen`: what the duplicate check found) and the publish are known.

        The same key with the same content is a duplicate: AA with the original's id, nothing
        processed. With other content the message was journaled as new, flagged CONTROL_ID_REUSED.
        """
        if plan.receipt is not None:
            return plan.receipt
        inbound, msg = plan.inbound, plan.message
        assert inbound is not None
        if seen is not None and seen.same_content:
            _log.info("duplicate", message_id=seen.message_id, channel=inbound.channel, control_id=inbound.control_id)
            return Receipt(seen.message_id, msg, True, duplicate_of=seen.message_id)
        reused_of = seen.message_id if seen is not None else None
        if published is not None:
            reason = "pipeline unavailable: message journaled but not queued; the sender should resend"
            self.journal.messages.failed(inbound.id, "intake", reason)
            metrics.failed(inbound.channel, "intake")
            _log.error("publish_failed", message_id=inbound.id, channel=inbound.channel, **error_fields(published))
            return Receipt(inbound.id, msg, False, None, reason)
        metrics.received(inbound.channel)
        _log.info("received", message_id=inbound.id, channel=inbound.channel, control_id=inbound.control_id,
                  type=inbound.message_type, size=len(inbound.raw))
        if reused_of is not None:  # ids only: the earlier message is found by its id
            _log.info("control_id_reused", message_id=inbound.id, reused_of=reused_of, channel=inbound.channel)
        return Receipt(inbound.id, msg, True, reused_of=reused_of)

    def _patient_key(self, channel: ChannelConfig, msg: Message) -> str:
        """The journal's keyed hash of the patient the format finds in the message ('' when none)."""
        found = self.formats.hl7v2.patient_key(channel, msg)
        return self.journal.keys.patient_key(*found) if found else ""

    def recover(self) -> int:
        """Re-enqueue every journaled message that is not final. Run at start, before listening.

        Inside the pipeline delivery is at-least-once: a message that was also still queued is
        transformed again (same bytes: ids and clock are deterministic) and destinations skip
        what they already hold.
        """
        count = 0
        for row in self.journal.messages.unfinished():
            try:
                self.broker.publish_in(row.raw, message_id=row.id, channel=row.channel, patient_key=row.patient_key,
                                       headers={"received_at": row.received_at.isoformat(),
                                                "message_type": row.message_type})
            except BrokerError as exc:
                _log.error("recovery_publish_failed", message_id=row.id, **error_fields(exc))
                raise
            self.journal.messages.event(row.id, "recovery", "requeued", {"previous_status": row.status})
            count += 1
        if count:
            _log.info("recovered", messages=count)
        return count


