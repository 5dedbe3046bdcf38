"""Ports: the narrow interfaces the engine hands to connectors, instead of its journal, broker and intake.

An input is constructed with an `InputPorts` (the engine's `Intake` implements it); an output's
`deliver` is given an `OutputLedger` (the engine's `Journal` implements it). Each port says what it
guarantees; `engine.connectors.testing` has an in-memory twin of each for fast connector tests.

    InputPorts            everything an input connector is given
    ├── Admission         admit a message or a file's records: durable, then queued; a Receipt to answer with
    ├── .events           ConnectionEvents: notes on a message, connections opened and closed
    ├── .files            FileLedger: a file claimed once by its bytes, its progress, its end
    ├── .idempotency      IdempotencyLedger: one message per REST Idempotency-Key
    ├── .backpressure     Backpressure: how much waits in the pipeline
    ├── .messages         MessageLookup: a journaled message's status
    └── .mappings         MappingSources: where the CSV maps are
    OutputLedger          what an output records before and after it writes
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from engine.errors import ParseError
from engine.hl7v2.er7 import Message
from engine.store.files import FileClaim, FileProgress
from engine.store.idempotency import Answer, Claimed, Mismatch, Pending, State
from engine.store.journal import MessageRow, OutputRow
from engine.types import Outcome

if TYPE_CHECKING:
    from engine.config import ChannelConfig

__all__ = [
    "Admission", "Answer", "Backpressure", "Claimed", "ConnectionEvents", "FileClaim", "FileLedger",
    "FileProgress", "FileStep", "IdempotencyLedger", "InputPorts", "MappingSources", "MessageLookup",
    "MessageRow", "Mismatch", "OutputLedger", "OutputRow", "Pending", "Receipt", "State",
]


@dataclass(frozen=True)
class Receipt:
    """What an input needs to answer its sender, once the message is admitted (or refused).

    `accepted` is True only when the message is journaled and queued (or was a duplicate, or an
    acknowledgment recorded and filtered): the input may then answer AA / 202.
    """

    message_id: str
    message: Message | None
    accepted: bool
    error: ParseError | None = None
    reason: str = ""
    duplicate_of: str | None = None
    reused_of: str | None = None  # CONTROL_ID_REUSED: the earlier message with this MSH-4 + MSH-10, other content
    watching: asyncio.Future[Outcome] | None = None  # set when the caller asked to wait for the transform


@dataclass(frozen=True, slots=True)
class FileStep:
    """A file's progress moving from `before` to `after`, committed with the records it covers.

    Guarantees nothing by itself: `Admission.admit_file_records` writes it in the same transaction as
    the records, and refuses both when the file's progress is no longer `before`.
    """

    sha256: str
    before: FileProgress
    after: FileProgress
    status: str = "processing"
    sha256_end: str = ""


class Admission(Protocol):
    """Admits what a sender sent.

    Guarantees: when a receipt says `accepted`, the exact bytes are journaled (group commit) and
    queued for the transform, so the input may acknowledge; unreadable bytes are journaled as
    failed with the reason; a duplicate (same key, same content within the channel's window) is
    answered with the original's id and not processed again.
    """

    async def receive_async(self, channel: ChannelConfig, raw: bytes, *, peer: str = "",
                            senders: frozenset[str] | None = None, client: str = "",
                            executor: Executor | None = None,
                            wait_if: Callable[[Message], bool] | None = None) -> Receipt:
        """An HL7 v2 message; with `wait_if`, the receipt may carry a future for its transform outcome."""
        ...

    async def receive_fhir_async(self, channel: ChannelConfig, raw: bytes, *, resource_type: str, control_id: str,
                                 peer: str = "", client: str = "", executor: Executor | None = None) -> Receipt:
        """A FHIR resource or Bundle the input has already validated."""
        ...

    async def wait_outcome(self, message_id: str, watching: asyncio.Future[Outcome], timeout: float) -> Outcome:
        """The transform outcome of an accepted message whose receipt carries `watching` (or a timeout)."""
        ...

    def admit_file_records(self, channel: ChannelConfig, groups: list[tuple[bytes, str]],
                           failed: list[tuple[bytes, str, str]], *, message_type: str, sender: str,
                           detail: dict[str, Any], step: FileStep | None = None) -> bool:
        """A file's records in one transaction: `groups` (raw, control id) journaled and then queued,
        `failed` (raw, control id, reason) journaled as failed; with `step`, the file's progress in the
        same transaction. False, and nothing written, when the progress is no longer `step.before`.
        A group that cannot be queued is failed with the reason (replayable), never left received."""
        ...


class ConnectionEvents(Protocol):
    """Events an input records about messages and connections, for the operators.

    Guarantees: each call is durable once it returns; it may raise when the journal is down (the
    caller decides whether that matters: a connection must not break on it).
    """

    def note(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None: ...

    def connection_opened(self, conn_id: str, channel: str, peer: str, client: str = "",
                          outcome: str = "open") -> None: ...

    def connection_closed(self, conn_id: str, messages: int, outcome: str = "closed") -> None: ...


class FileLedger(Protocol):
    """Files taken in by file inputs, known by the SHA-256 of their bytes.

    Guarantees: the same bytes are claimed once per channel, under any name; a file's progress
    only moves forward (`Admission.admit_file_records`), so no row is journaled twice.
    """

    def claim(self, channel: str, sha256: str, name: str, *, size: int, mtime_ns: int, encoding: str) -> FileClaim:
        """A new claim on these bytes, or the earlier one (done, failed or still processing)."""
        ...

    def processing(self, channel: str, name: str) -> list[FileClaim]:
        """Claims of this name still being read (a file that may have grown since)."""
        ...

    def get(self, channel: str, sha256: str) -> FileClaim | None: ...

    def fail(self, channel: str, sha256: str) -> None:
        """The file could not be read on: what was journaled stays, the file is failed."""
        ...

    def claim_upload(self, channel: str, sha256: str, name: str) -> str | None:
        """Claim an uploaded file; the name it had when these bytes were seen before (then skip it)."""
        ...

    def status(self, channel: str, sha256: str) -> tuple[str, int, int, int] | None:
        """(status, rows read, messages, rejected) of a file, or None if never seen."""
        ...

    def done(self, channel: str, sha256: str, status: str, rows_read: int, messages: int, rejected: int) -> None:
        """Record how an upload ended, with its counts."""
        ...


class IdempotencyLedger(Protocol):
    """Idempotency keys of a REST input: one message per (channel, client, key).

    Guarantees: a key is claimed by one request at a time; a completed key answers the same body
    with its first answer (`Answer`) and another body with `Mismatch`.
    """

    def claim(self, channel: str, client: str, key: str, body_sha256: str) -> State: ...

    def complete(self, channel: str, client: str, key: str, claim: str, status: int, body: bytes,
                 message_id: str = "") -> bool: ...

    def release(self, channel: str, client: str, key: str, claim: str) -> None: ...

    def state(self, channel: str, client: str, key: str, body_sha256: str) -> State | None: ...

    def journaled_since(self, channel: str, raw_sha256: str, since: datetime, margin_s: float = 5.0) -> str | None:
        """The id of a message with these bytes journaled since `since` (a claim's request that died)."""
        ...


class Backpressure(Protocol):
    """How much waits in this process's pipeline: a file input reads no faster than it drains."""

    def backlog(self) -> int: ...


class MessageLookup(Protocol):
    """A journaled message's row (status, stage, reason), for an input's status endpoint."""

    def get(self, message_id: str) -> MessageRow | None: ...


class MappingSources(Protocol):
    """Where mappings live: a CSV input loads its CSV map from here."""

    mappings_dir: Path
    schema_dir: Path


class InputPorts(Admission, Protocol):
    """Everything the engine gives an input connector at construction: admission and the ports beside it."""

    @property
    def events(self) -> ConnectionEvents: ...

    @property
    def files(self) -> FileLedger: ...

    @property
    def idempotency(self) -> IdempotencyLedger: ...

    @property
    def backpressure(self) -> Backpressure: ...

    @property
    def messages(self) -> MessageLookup: ...

    @property
    def mappings(self) -> MappingSources: ...


class OutputLedger(Protocol):
    """What an output records before it writes, and reads to recognise what it already wrote.

    Guarantees: an intent recorded by `output_writing` / `outputs_writing` is durable once the call
    returns, so after a crash the message is checked at that location and not written twice.
    """

    def get(self, message_id: str) -> MessageRow | None: ...

    def output(self, message_id: str, destination: str, limit: int | None = None) -> OutputRow | None: ...

    def output_writing(self, message_id: str, destination: str, location: str) -> None: ...

    def outputs_writing(self, destination: str, items: list[tuple[str, str]]) -> None: ...
