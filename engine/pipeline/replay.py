"""Replay: operators' requests (CLI, console) taken from the journal and put back in the pipeline.

The request is a row in the journal, not a message to a process, so it works the same on the
embedded broker (the CLI is another process) and on RabbitMQ with many workers: whichever
process runs the stage claims it, once. `transform` re-runs the raw message through today's
mapping and routing; `deliver` re-sends the journaled Bundle to one destination (or all of
the message's), with fresh retry rounds.
"""

from __future__ import annotations

import threading

import structlog

from engine.errors import BrokerError, StoreError
from engine.logs import error_fields
from engine.store import Journal
from engine.store.replays import Replay
from engine.transport import Transport

__all__ = ["Replayer"]

_log = structlog.get_logger("wasla.replay")


class Replayer:
    """Takes operators' replay requests from the journal and publishes each message again: to the
    transform, or its journaled Bundle to one or all destinations. A request is claimed once, whichever
    process takes it; one that cannot be published is requested again.
    """

    def __init__(self, journal: Journal, broker: Transport, modes: tuple[str, ...], poll_s: float = 1.0) -> None:
        self.journal = journal
        self.broker = broker
        self.modes = modes
        self.poll_s = poll_s

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                taken = self.journal.replays.take(self.modes)
            except StoreError as exc:
                _log.error("replay_poll_failed", **error_fields(exc))
                taken = []
            for r in taken:
                try:
                    self._one(r)
                except Exception as exc:  # noqa: BLE001 - one bad request must not stop the replays
                    _log.error("replay_failed", message_id=r.message_id, **error_fields(exc))
            if not taken:
                stop.wait(self.poll_s)

    def _one(self, r: Replay) -> None:
        row = self.journal.messages.get(r.message_id)
        if row is None:
            return
        headers = {"received_at": row.received_at.isoformat(), "message_type": row.message_type}
        try:
            outputs = [] if r.mode == "transform" else self._outputs(r)
            if not outputs:  # transform, or never transformed: the whole pipeline again
                self.broker.publish_in(row.raw, message_id=row.id, channel=row.channel, patient_key=row.patient_key,
                                       headers=headers)
            for dest, body in outputs:
                self.broker.publish_out(body, message_id=row.id, channel=row.channel, message_type=row.message_type,
                                        patient_key=row.patient_key,
                                        headers={**headers, "destinations": dest})
        except BrokerError as exc:
            self.journal.replays.request([r.message_id], r.mode, r.destination, r.requested_by)  # try again later
            _log.error("replay_publish_failed", message_id=r.message_id, **error_fields(exc))
            return
        _log.info("replayed", message_id=r.message_id, mode=r.mode, destination=r.destination or "*",
                  by=r.requested_by)

    def _outputs(self, r: Replay) -> list[tuple[str, bytes]]:
        dests = [r.destination] if r.destination else self.journal.outputs.destinations(r.message_id)
        found = []
        for dest in dests:
            out = self.journal.outputs.get(r.message_id, dest)
            if out is not None and out.body:
                found.append((dest, out.body))
        return found
