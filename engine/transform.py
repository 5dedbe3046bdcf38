"""Transform: parse, map to a FHIR Bundle, journal it, route it to its destinations.

The clock is the message's receipt time, so a re-run (recovery, replay) yields the same bytes.
A message that cannot be converted is journaled as failed with the rule and field at fault and
dead-lettered; an infrastructure fault (journal, broker) puts it back in the queue instead.
"""

from __future__ import annotations

import threading
from datetime import datetime

import structlog

from engine.broker import Broker, Delivery
from engine.config import Config
from engine.errors import BrokerError, ConfigError, MappingError, ParseError, StoreError
from engine.hl7v2.er7 import decode, parse
from engine.logs import error_fields
from engine.mapping import Converter
from engine.outcomes import Outcomes
from engine.store import Journal
from engine.types import Status

__all__ = ["Transformer"]

_log = structlog.get_logger("wasla.transform")


class Transformer:
    def __init__(self, config: Config, journal: Journal, broker: Broker, converter: Converter,
                 outcomes: Outcomes | None = None) -> None:
        self.outcomes = outcomes  # channels in this process waiting on a message's outcome
        self.config = config
        self.journal = journal
        self.broker = broker
        self.converter = converter

    def handle(self, d: Delivery) -> None:
        mid = str(d.headers.get("message_id", ""))
        channel_id = str(d.headers.get("channel", ""))
        try:
            channel = self.config.channel(channel_id)
        except KeyError:
            self._fail(d, mid, f"channel '{channel_id}' is not configured any more", channel_id)
            return
        try:
            received_at = datetime.fromisoformat(str(d.headers["received_at"]))
            msg = parse(decode(d.body, channel.input.get("encoding")))
            conversion = self.converter.convert(channel.mapping, msg, received_at)
        except (ParseError, MappingError, ConfigError, KeyError, ValueError) as exc:
            self._fail(d, mid, _reason(exc), channel_id)
            return
        spec = self.converter.spec(channel.mapping)
        try:
            self.journal.transformed(mid, dict.fromkeys(channel.outputs, conversion.bundle),
                                     {"mapping": spec.name, "version": spec.version,
                                      "warnings": conversion.warnings, "destinations": list(channel.outputs)},
                                     wait=not self.broker.memory)
            self.broker.publish_out(conversion.bundle, message_id=mid, channel=channel_id,
                                    message_type=msg.message_type, patient_key=str(d.headers.get("patient_key", "")),
                                    headers={"received_at": received_at.isoformat()})
        except (StoreError, BrokerError) as exc:
            _log.error("transform_requeued", message_id=mid, channel=channel_id, **error_fields(exc))
            threading.Event().wait(0.5)
            d.requeue()
            return
        d.ack()
        if self.outcomes is not None:
            self.outcomes.settle(mid, Status.TRANSFORMED)
        _log.info("transformed", message_id=mid, channel=channel_id, control_id=msg.control_id,
                  mapping=spec.name, warnings=len(conversion.warnings))

    def _fail(self, d: Delivery, mid: str, reason: str, channel_id: str) -> None:
        try:
            self.journal.failed(mid, "transform", reason)
        except StoreError as exc:
            _log.error("transform_requeued", message_id=mid, channel=channel_id, **error_fields(exc))
            d.requeue()
            return
        d.reject()
        if self.outcomes is not None:
            self.outcomes.settle(mid, Status.FAILED, reason)
        _log.warning("transform_failed", message_id=mid, channel=channel_id)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ParseError | MappingError | ConfigError):
        return str(exc)
    return f"malformed pipeline message ({exc.__class__.__name__})"
