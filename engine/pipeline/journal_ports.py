"""The connector ports over the journal's repositories: each a narrow view, nothing else reachable.

`engine.connectors.ports` declares what a connector may do; these classes are how the journal does
it. An input gets them through `engine.pipeline.intake_ports.IntakePorts`, an output's `deliver` gets a
`JournalOutputLedger` from `engine.pipeline.deliver.Deliverer`.
"""

from __future__ import annotations

from typing import Any

from engine.store import Journal, MessageRow, OutputRow
from engine.store.files import Files

__all__ = ["JournalEvents", "JournalFiles", "JournalLookup", "JournalOutputLedger"]


class JournalFiles(Files):
    """The `FileLedger` port over the journal's `files` table: dropped files (`Files`) and uploads.

    Guarantees what `Files` does (a file claimed once by its bytes, progress as a compare-and-set),
    plus the upload calls a REST input makes (claim by bytes, status, end with counts).
    """

    def claim_upload(self, channel: str, sha256: str, name: str) -> str | None:
        return self.claim_name(channel, sha256, name)


class JournalEvents:
    """The `ConnectionEvents` port: notes on a message's timeline and connection records, nothing else."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def note(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        self._journal.messages.note(message_id, stage, status, detail)

    def connection_opened(self, conn_id: str, channel: str, peer: str, client: str = "",
                          outcome: str = "open") -> None:
        self._journal.connections.opened(conn_id, channel, peer, client, outcome)

    def connection_closed(self, conn_id: str, messages: int, outcome: str = "closed") -> None:
        self._journal.connections.closed(conn_id, messages, outcome)


class JournalLookup:
    """The `MessageLookup` port: a journaled message by id, read only."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def get(self, message_id: str) -> MessageRow | None:
        return self._journal.messages.get(message_id)


class JournalOutputLedger(JournalLookup):
    """The `OutputLedger` port an output's `deliver` is given: the message, its output row for a
    destination, and where the output is being written (recorded before the write, for recovery)."""

    def output(self, message_id: str, destination: str, limit: int | None = None) -> OutputRow | None:
        return self._journal.outputs.get(message_id, destination, limit)

    def output_writing(self, message_id: str, destination: str, location: str) -> None:
        self._journal.outputs.output_writing(message_id, destination, location)

    def outputs_writing(self, destination: str, items: list[tuple[str, str]]) -> None:
        self._journal.outputs.outputs_writing(destination, items)
