"""The engine's side of the connector ports: what `Intake` gives an input besides admitting messages.

`IntakePorts` is mixed into `engine.pipeline.intake.Intake`, which then implements
`engine.connectors.ports.InputPorts` over its journal, broker and converter; the input connectors
never see those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from engine import metrics
from engine.config import ChannelConfig
from engine.connectors.ports import (
    Backpressure,
    ConnectionEvents,
    FileLedger,
    FileStep,
    IdempotencyLedger,
    MappingSources,
    MessageLookup,
)
from engine.errors import BrokerError
from engine.ids import message_id
from engine.logs import error_fields
from engine.mapping import Converter
from engine.pipeline.journal_ports import JournalEvents, JournalFiles, JournalLookup
from engine.pipeline.outcomes import Outcome, Outcomes
from engine.store import Journal
from engine.store.idempotency import IdempotencyKeys
from engine.store.writer import Work
from engine.transport import Transport
from engine.types import Inbound, Status

__all__ = ["IntakePorts"]

_log = structlog.get_logger("wasla.csv_drop")  # the file inputs' events, under their logger


class IntakePorts:
    """The ports an input is given beside admission, over the intake's journal, broker and converter.

    Owns nothing of its own: each port is a narrow view of the journal, broker or converter.
    Guarantees that an input holding these can neither read nor write anything else.
    """

    journal: Journal
    broker: Transport
    converter: Converter
    outcomes: Outcomes
    clock: Callable[[], datetime]

    @property
    def events(self) -> ConnectionEvents:
        return JournalEvents(self.journal)

    @property
    def files(self) -> FileLedger:
        """A new view of the files table for each caller (it holds no state of its own)."""
        return JournalFiles(self.journal.db)

    @property
    def idempotency(self) -> IdempotencyLedger:
        """New keys for each caller: each REST input keeps its own (and prunes on its own schedule)."""
        return IdempotencyKeys(self.journal.db)

    @property
    def backpressure(self) -> Backpressure:
        return self.broker

    @property
    def messages(self) -> MessageLookup:
        return JournalLookup(self.journal)

    @property
    def mappings(self) -> MappingSources:
        return self.converter

    async def wait_outcome(self, message_id: str, watching: asyncio.Future[Outcome], timeout: float) -> Outcome:
        return await self.outcomes.wait(message_id, watching, timeout)

    def admit_file_records(self, channel: ChannelConfig, groups: list[tuple[bytes, str]],
                           failed: list[tuple[bytes, str, str]], *, message_type: str, sender: str,
                           detail: dict[str, Any], step: FileStep | None = None) -> bool:
        """Journal a file's records (and its progress) in one transaction, then queue the groups."""
        journal, now = self.journal, self.clock()
        good = [Inbound(message_id(), channel.id, now, raw, message_type, cid, sender) for raw, cid in groups]
        bad = [(Inbound(message_id(), channel.id, now, raw, message_type, cid, sender, status=Status.FAILED,
                        reason=reason), reason) for raw, cid, reason in failed]
        works: list[Work] = [journal.messages.receive_work(i, detail) for i in good]
        works += [journal.messages.receive_work(i, {**detail, "reason": r}) for i, r in bad]
        if step is not None:
            if not journal.files.advance(channel.id, step.sha256, step.before, step.after, works,
                                          status=step.status, sha256_end=step.sha256_end):
                return False
        else:
            journal.db.commit(lambda cur: [w(cur) for w in works])
        for inbound in good:
            self._queue(inbound)
        if good or bad:
            _log.info("received_batch", channel=channel.id, type=message_type, records=len(good), rejected=len(bad))
        return True

    def _queue(self, inbound: Inbound) -> None:
        """Publish a journaled record; one that cannot be is failed with the reason (replay it from the journal)."""
        try:
            self.broker.publish_in(inbound.raw, message_id=inbound.id, channel=inbound.channel,
                                   patient_key=inbound.patient_key,
                                   headers={"received_at": inbound.received_at.isoformat(),
                                            "message_type": inbound.message_type})
        except Exception as exc:  # noqa: BLE001 - any failed publish: the message is failed, never left received
            err = exc if isinstance(exc, BrokerError) else BrokerError(
                f"publish failed: {exc.__class__.__name__}")
            self.journal.messages.failed(inbound.id, "intake",
                                         "pipeline unavailable: journaled but not queued; replay it")
            metrics.failed(inbound.channel, "intake")
            _log.error("publish_failed", message_id=inbound.id, channel=inbound.channel, **error_fields(err))
            return
        metrics.received(inbound.channel)
