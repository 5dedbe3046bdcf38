"""Transform: parse, map to a FHIR Bundle, journal it, route it to its destinations.

The clock is the message's receipt time, so a re-run (recovery, replay) yields the same bytes.
A message that cannot be converted is journaled as failed with the rule and field at fault and
dead-lettered; one whose type no mapping of its channel takes, on a channel with `unmapped_types:
pass`, is journaled as passed and routed unconverted to the destinations that forward HL7 v2; an
infrastructure fault (journal, broker) holds the batch, which is tried again in place until it goes
through (`Transformer.handle` says why not back in the queue).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from engine import metrics
from engine.config import Config
from engine.errors import BrokerError, StoreError
from engine.formats import Formats, NotConverted, NotMapped
from engine.logs import error_fields
from engine.mapping import Converter
from engine.pipeline.history import History
from engine.pipeline.outcomes import Outcomes
from engine.pipeline.route import Router
from engine.store import Journal
from engine.transport import Delivery, Transport, hold, received_epoch
from engine.types import Status

__all__ = ["Transformer"]

_log = structlog.get_logger("wasla.transform")


@dataclass(frozen=True, slots=True)
class _Converted:
    delivery: Delivery
    mid: str
    channel: str
    message_type: str
    control_id: str
    received_at: str
    bundle: bytes
    outputs: tuple[str, ...]
    detail: dict[str, Any]


class Transformer:
    """Converts each batch from the transform queues to FHIR Bundles, journals every result in one
    commit, then publishes and acknowledges each. Conversion is deterministic (the clock is the
    receipt time); a journal or broker fault holds the batch and tries it again in place, so the
    patient's order is kept.
    """

    def __init__(self, config: Config, journal: Journal, broker: Transport, converter: Converter,
                 outcomes: Outcomes | None = None, *, stop: threading.Event | None = None) -> None:
        self.outcomes = outcomes  # channels in this process waiting on a message's outcome
        self.stop = stop or threading.Event()
        self.config = config
        self.journal = journal
        self.broker = broker
        self.converter = converter
        self.formats = Formats(converter)  # how each input format is read and converted
        self.router = Router(config, lambda msg: converter.context(msg, datetime.now().astimezone()))
        # embedded broker: journal writes are lazy, so this process remembers its last conversions
        self.history = History(journal, remember=4096 if broker.capabilities.in_process else 0)

    def handle(self, batch: list[Delivery]) -> None:
        """Convert a batch, journal every result in one commit, then publish and acknowledge each.

        A journal or broker fault holds what is left of the batch here, and it is tried again until
        it goes through (the same bytes: conversion is deterministic). Handing it back to the queue
        would let the messages this consumer already prefetched behind it overtake it, leaving the
        patient on an older version. Only
        a stopping process hands the batch back, by leaving it unsettled: `Transport.consume` then
        closes the consumer's channel and the broker returns all it held, in order. A write the
        journal refuses outright (not a lost connection) is not waited out: `_isolate`.
        """
        todo, wait = batch, 0.5
        while True:
            try:
                self._handle(todo)
                return
            except (StoreError, BrokerError) as exc:
                todo = [d for d in todo if not d.settled]
                if todo and isinstance(exc, StoreError) and not exc.transient:
                    todo = self._isolate(todo)
                if not todo:
                    return
                if self.stop.is_set():  # left unsettled: the consumer hands them back as it goes
                    _log.error("transform_handed_back", messages=len(todo), **error_fields(exc))
                    return
                _log.error("transform_paused", messages=len(todo), retry_in_s=wait, **error_fields(exc))
                hold(wait, self.stop, todo[0])
                wait = min(wait * 2, 5.0)

    def _isolate(self, todo: list[Delivery]) -> list[Delivery]:
        """The journal refused the batch's write itself: run each message alone, in order, and fail
        (dead-letter) the one it refuses alone, so one message cannot hold its shard for ever.
        Returns what is left when the journal or the broker went away meanwhile (held, tried again).
        """
        for n, d in enumerate(todo):
            try:
                self._handle([d])
            except BrokerError:
                return todo[n:]
            except StoreError as exc:
                if exc.transient:
                    return todo[n:]
                mid = str(d.headers.get("message_id", ""))
                _log.error("transform_refused_by_journal", message_id=mid, **error_fields(exc))
                try:
                    self._fail(d, mid, f"the journal refused to record its conversion ({exc})",
                               str(d.headers.get("channel", "")))
                except StoreError as again:
                    if again.transient:
                        return todo[n:]
                    d.reject()  # the dead-letter queue keeps it; the journal cannot say so
        return []

    def _handle(self, batch: list[Delivery]) -> None:
        if not self.broker.capabilities.in_process:
            batch = self._journaled(batch)
        self.history.start_batch()
        done = [c for c in map(self._convert, batch) if c is not None]
        if not done:
            return
        self.journal.outputs.transformed_many(
            [(c.mid, dict.fromkeys(c.outputs, c.bundle), c.detail) for c in done],
            wait=not self.broker.capabilities.in_process)
        self.broker.publish_out_many([   # filtered ones (no outputs) were journaled with their reasons
            (c.bundle, c.mid, c.channel, c.message_type, str(c.delivery.headers.get("patient_key", "")),
             {"received_at": c.received_at, "destinations": ",".join(c.outputs)}) for c in done if c.outputs])
        for c in done:
            c.delivery.ack()
            passed = Status.PASSED if "passed" in c.detail else Status.TRANSFORMED
            metrics.transformed(c.channel, passed if c.outputs else "filtered")
            if self.outcomes is not None:
                self.outcomes.settle(c.mid, passed if c.outputs else Status.FILTERED)
            _log.info(passed if c.outputs else "filtered", message_id=c.mid, channel=c.channel,
                      control_id=c.control_id,
                      mapping=c.detail["mapping"], warnings=len(c.detail["warnings"]))

    def _journaled(self, batch: list[Delivery], grace_s: float = 2.0) -> list[Delivery]:
        """The deliveries whose message the journal holds; the others are void and dropped.

        On RabbitMQ intake publishes while its journal commit is still running, to overlap the
        two waits. A message can therefore arrive here a moment before its row is visible, or
        never get a row: its commit failed (the sender was answered AE) or found it a duplicate
        (the original is processed instead). A missing row is waited for until `grace_s` after
        the message's receipt, never longer: a commit takes milliseconds.
        """
        ids = [str(d.headers.get("message_id", "")) for d in batch]
        found = self.journal.messages.present(ids)
        missing = [d for mid, d in zip(ids, batch, strict=True) if mid not in found]
        if missing:
            now = time.time()
            deadline = max(received_epoch(d.headers, now) for d in missing) + grace_s
            while missing and time.time() < deadline:
                threading.Event().wait(0.02)
                found |= self.journal.messages.present([str(d.headers.get("message_id", "")) for d in missing])
                missing = [d for d in missing if str(d.headers.get("message_id", "")) not in found]
        kept = []
        for mid, d in zip(ids, batch, strict=True):
            if mid in found:
                kept.append(d)
            else:
                _log.warning("publish_void", message_id=mid, reason="not in the journal: duplicate or failed commit")
                d.ack()
        return kept

    def _convert(self, d: Delivery) -> _Converted | None:
        """Map one message; a message that cannot be converted is failed and dead-lettered here."""
        mid = str(d.headers.get("message_id", ""))
        channel_id = str(d.headers.get("channel", ""))
        try:
            channel = self.config.channel(channel_id)
        except KeyError:
            self._fail(d, mid, f"channel '{channel_id}' is not configured any more", channel_id)
            return None
        fmt = self.formats.of(str(d.headers.get("message_type", "")))
        try:
            conv = fmt.convert(d.body, d.headers, channel, self.history)
        except NotMapped as exc:
            return self._passed(d, mid, channel_id, exc)
        except NotConverted as exc:
            self._fail(d, mid, exc.reason, channel_id)
            return None
        taken, refused = self.router.route(channel_id, conv.message_type, conv.sending_facility, conv.message)
        detail: dict[str, Any] = {"mapping": conv.mapping, "version": conv.version, "warnings": conv.warnings,
                                  "destinations": list(taken)}
        if not taken:
            detail["filtered"] = _filtered(refused)
        invalid = sorted({w["identifier_system"] for w in conv.warnings if w["code"] == "IDENTIFIER_INVALID"})
        if invalid and channel.invalid_identifiers == "reject":
            self._fail(d, mid, "identifiers that fail their format or check digits: " + ", ".join(invalid), channel_id)
            return None
        unmapped = sorted({(w["code_map"], w["local_code"]) for w in conv.warnings
                           if w["code"] in ("LOCAL_CODE_UNMAPPED", "CODE_UNMAPPED") and "code_map" in w})
        if unmapped and channel.unmapped_codes != "pass":
            reason = "local codes without a national mapping: " + ", ".join(f"{m} {c}" for m, c in unmapped)
            if channel.unmapped_codes == "reject":
                self._fail(d, mid, reason, channel_id)
            else:
                self._park(d, mid, conv.sending_facility, unmapped, reason, channel_id, detail)
            return None
        return _Converted(d, mid, channel_id, conv.message_type, conv.control_id, conv.received_at, conv.bundle,
                          taken, detail)

    def _passed(self, d: Delivery, mid: str, channel_id: str, exc: NotMapped) -> _Converted:
        """A message no mapping of its channel takes, on a channel that passes such types on: not
        converted; its original HL7 v2 goes to the routed destinations that forward v2. Each routed
        destination that takes FHIR only is named in the journal (`not_sent`), and with none that
        forwards v2 the message is filtered with that reason: nothing is dropped without a trace."""
        msg = exc.message
        taken, refused = self.router.route(channel_id, msg.message_type, msg.sending_facility, msg)
        v2 = tuple(t for t in taken if self.router.forwards_v2(t))
        not_sent = {t: "takes FHIR only, and no mapping converted the message" for t in taken if t not in v2}
        detail: dict[str, Any] = {"mapping": "", "version": "", "warnings": [], "destinations": list(v2),
                                  "passed": exc.reason}
        if not_sent:
            detail["not_sent"] = not_sent
        if not v2:
            detail["filtered"] = f"{exc.reason}; " + _filtered({**refused, **not_sent})
        return _Converted(d, mid, channel_id, msg.message_type, msg.control_id, str(d.headers.get("received_at", "")),
                          d.body, v2, detail)

    def _park(self, d: Delivery, mid: str, sender: str, codes: list[tuple[str, str]], reason: str, channel_id: str,
              detail: dict[str, Any]) -> None:
        """Hold the message until its local codes are mapped (channel policy `park`); it is not lost,
        not delivered with a code the receiver cannot read, and re-runs by itself once mapped."""
        self.journal.parked.park(mid, sender, codes, reason, {"mapping": detail["mapping"],
                                                              "version": detail["version"],
                                                              "warnings": detail["warnings"]})
        d.ack()
        metrics.transformed(channel_id, "parked")
        if self.outcomes is not None:
            self.outcomes.settle(mid, Status.PARKED, reason)
        _log.info("parked", message_id=mid, channel=channel_id, codes=len(codes))

    def _fail(self, d: Delivery, mid: str, reason: str, channel_id: str) -> None:
        self.journal.messages.failed(mid, "transform", reason)  # a StoreError holds the batch (`handle`)
        d.reject()
        metrics.transformed(channel_id, "failed")
        if self.outcomes is not None:
            self.outcomes.settle(mid, Status.FAILED, reason)
        _log.warning("transform_failed", message_id=mid, channel=channel_id)


def _filtered(refused: dict[str, str]) -> str:
    if not refused:
        return "no destination takes this channel's messages"
    return "no destination takes it: " + "; ".join(f"{d}: {why}" for d, why in sorted(refused.items()))
