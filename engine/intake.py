"""Intake: make an inbound message durable, then say so.

Order matters and is the product's first promise: journal the exact bytes (group commit),
publish to the pipeline (confirmed on RabbitMQ), and only then return — the channel answers
AA / 202 after this returns `accepted`. Bytes that cannot be read are journaled as failed
with the reason, so nothing a sender sent is ever lost, even garbage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from engine.broker import Broker
from engine.config import ChannelConfig
from engine.errors import BrokerError, ConfigError, MappingError, ParseError
from engine.hl7v2.er7 import Message, decode, parse
from engine.ids import message_id
from engine.logs import error_fields
from engine.mapping import Converter
from engine.store import Journal
from engine.types import Inbound, Status

__all__ = ["Intake", "Receipt"]

_log = structlog.get_logger("wasla.intake")


@dataclass(frozen=True)
class Receipt:
    """What a channel needs to answer its sender."""

    message_id: str
    message: Message | None
    accepted: bool
    error: ParseError | None = None
    reason: str = ""
    duplicate_of: str | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class Intake:
    def __init__(self, journal: Journal, broker: Broker, converter: Converter,
                 clock: Callable[[], datetime] = _now) -> None:
        self.journal = journal
        self.broker = broker
        self.converter = converter
        self.clock = clock

    def receive(self, channel: ChannelConfig, raw: bytes, *, peer: str = "", senders: frozenset[str] | None = None,
                client: str = "") -> Receipt:
        """Journal, publish, and report. Blocking: channels call it from a worker thread.

        `senders`, when given, are the MSH-4 facilities the authenticated client may send for
        (a TLS certificate bound to facilities); any other MSH-4 is refused and audited.
        """
        mid, now = message_id(), self.clock()
        try:
            msg = parse(decode(raw, channel.input.get("encoding")))
        except (ParseError, UnicodeDecodeError, LookupError) as exc:
            err = exc if isinstance(exc, ParseError) else ParseError(
                f"cannot decode the message with the channel's encoding ({exc.__class__.__name__})", code="102")
            self.journal.receive(Inbound(mid, channel.id, now, raw, status=Status.FAILED, reason=err.message),
                                 {"reason": err.message, "segment": err.segment, "field": err.field, "peer": peer})
            _log.warning("message_unreadable", message_id=mid, channel=channel.id, code=err.code, size=len(raw))
            return Receipt(mid, None, False, err, err.message)
        if senders is not None and msg.sending_facility not in senders:
            reason = "sending facility (MSH-4) not authorised for this client certificate"
            self.journal.receive(Inbound(mid, channel.id, now, raw, msg.message_type, msg.control_id,
                                         msg.sending_facility, status=Status.FAILED, reason=reason),
                                 {"reason": reason, "audit": "sender_mismatch", "client": client, "peer": peer})
            _log.warning("sender_mismatch", message_id=mid, channel=channel.id, client=client)
            return Receipt(mid, msg, False, ParseError(reason, segment="MSH", sequence=1, field=4, code="207"),
                           reason)
        window = int(channel.input.get("duplicate_window_s", 86400))
        if window > 0:
            original = self.journal.find_duplicate(channel.id, msg.sending_facility, msg.control_id,
                                                   now - timedelta(seconds=window))
            if original is not None:
                self.journal.event(original, "intake", "duplicate", {
                    "peer": peer, "sha256": hashlib.sha256(raw).hexdigest(), "at": now.isoformat()})
                _log.info("duplicate", message_id=original, channel=channel.id, control_id=msg.control_id)
                return Receipt(original, msg, True, duplicate_of=original)
        patient_key = self._patient_key(channel, msg)
        inbound = Inbound(mid, channel.id, now, raw, msg.message_type, msg.control_id, msg.sending_facility,
                          patient_key)
        self.journal.receive(inbound, {"peer": peer} if peer else None)
        try:
            self.broker.publish_in(raw, message_id=mid, channel=channel.id, patient_key=patient_key,
                                   headers={"received_at": now.isoformat(), "message_type": msg.message_type})
        except BrokerError as exc:
            reason = "pipeline unavailable: message journaled but not queued; the sender should resend"
            self.journal.failed(mid, "intake", reason)
            _log.error("publish_failed", message_id=mid, channel=channel.id, **error_fields(exc))
            return Receipt(mid, msg, False, None, reason)
        _log.info("received", message_id=mid, channel=channel.id, control_id=msg.control_id,
                  type=msg.message_type, size=len(raw))
        return Receipt(mid, msg, True)

    def _patient_key(self, channel: ChannelConfig, msg: Message) -> str:
        try:
            found = self.converter.patient_key(channel.mapping, msg)
        except (MappingError, ConfigError):
            return ""
        return self.journal.patient_key(*found) if found else ""

    def recover(self) -> int:
        """Re-enqueue every journaled message that is not final. Run at start, before listening.

        Inside the pipeline delivery is at-least-once: a message that was also still queued is
        transformed again (same bytes: ids and clock are deterministic) and destinations skip
        what they already hold.
        """
        count = 0
        for row in self.journal.unfinished():
            try:
                self.broker.publish_in(row.raw, message_id=row.id, channel=row.channel, patient_key=row.patient_key,
                                       headers={"received_at": row.received_at.isoformat(),
                                                "message_type": row.message_type})
            except BrokerError as exc:
                _log.error("recovery_publish_failed", message_id=row.id, **error_fields(exc))
                raise
            self.journal.event(row.id, "recovery", "requeued", {"previous_status": row.status})
            count += 1
        if count:
            _log.info("recovered", messages=count)
        return count


