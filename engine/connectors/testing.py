"""In-memory twins of the connector ports, for fast connector tests: no journal, no broker.

`MemoryInputPorts` is handed to an input in place of the engine's `Intake`; it records what was
admitted, noted, claimed. `MemoryOutputLedger` is given to an output's `deliver` in place of the
journal; it records the intents written. Both keep everything in plain lists and dicts a test reads.

    ports = MemoryInputPorts()
    inp = MLLPInput(channel, ports, executor)     # a real socket, nothing durable behind it
    ...
    assert [a.control_id for a in ports.admitted] == ["MSG1"]
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.connectors.inputs import encoding_override
from engine.connectors.ports import (
    Answer,
    Claimed,
    FileClaim,
    FileProgress,
    FileStep,
    MessageRow,
    Mismatch,
    OutputRow,
    Pending,
    Receipt,
    State,
)
from engine.errors import ParseError
from engine.hl7v2.er7 import Message, decode, parse
from engine.ids import message_id
from engine.types import Outcome, Status

if TYPE_CHECKING:
    from engine.config import ChannelConfig

__all__ = [
    "Admitted", "MemoryEvents", "MemoryFiles", "MemoryIdempotency", "MemoryInputPorts", "MemoryOutputLedger",
    "MemoryPipeline",
]


@dataclass(frozen=True, slots=True)
class Admitted:
    """One record the twin admitted: what the journal would hold for it."""

    message_id: str
    channel: str
    raw: bytes
    message_type: str = ""
    control_id: str = ""
    sender: str = ""
    status: str = Status.RECEIVED
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class MemoryEvents:
    """Twin of `ConnectionEvents`: every note and connection event, in order, in `notes` and `connections`."""

    def __init__(self) -> None:
        self.notes: list[tuple[str, str, str, dict[str, Any]]] = []
        self.connections: list[tuple[str, str, dict[str, Any]]] = []  # (conn id, opened|closed, fields)

    def note(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        self.notes.append((message_id, stage, status, dict(detail or {})))

    def connection_opened(self, conn_id: str, channel: str, peer: str, client: str = "",
                          outcome: str = "open") -> None:
        self.connections.append((conn_id, "opened", {"channel": channel, "peer": peer, "client": client,
                                                     "outcome": outcome}))

    def connection_closed(self, conn_id: str, messages: int, outcome: str = "closed") -> None:
        self.connections.append((conn_id, "closed", {"messages": messages, "outcome": outcome}))


class MemoryFiles:
    """Twin of `FileLedger`: claims by (channel, SHA-256) in `claims`; progress moved by the pipeline twin."""

    def __init__(self) -> None:
        self.claims: dict[tuple[str, str], FileClaim] = {}
        self.uploads: dict[tuple[str, str], tuple[str, int, int, int]] = {}

    def claim(self, channel: str, sha256: str, name: str, *, size: int, mtime_ns: int, encoding: str) -> FileClaim:
        found = self.claims.get((channel, sha256))
        if found is not None:
            return found
        new = FileClaim(sha256, name, "processing", size, mtime_ns, encoding, FileProgress(), new=True)
        self.claims[(channel, sha256)] = replace(new, new=False)
        return new

    def processing(self, channel: str, name: str) -> list[FileClaim]:
        return [c for (ch, _), c in self.claims.items() if ch == channel and c.name == name
                and c.status == "processing"]

    def get(self, channel: str, sha256: str) -> FileClaim | None:
        return self.claims.get((channel, sha256))

    def fail(self, channel: str, sha256: str) -> None:
        found = self.claims.get((channel, sha256))
        if found is not None:
            self.claims[(channel, sha256)] = replace(found, status="failed")

    def advance(self, channel: str, step: FileStep) -> bool:
        """Move a claim's progress as the journal does: only from `step.before`, only while processing."""
        found = self.claims.get((channel, step.sha256))
        if found is None or found.status != "processing" or (found.progress.offset, found.progress.rows) != (
                step.before.offset, step.before.rows):
            return False
        self.claims[(channel, step.sha256)] = replace(found, status=step.status, progress=step.after)
        return True

    def claim_upload(self, channel: str, sha256: str, name: str) -> str | None:
        if (channel, sha256) in self.uploads:
            return name
        self.uploads[(channel, sha256)] = ("processing", 0, 0, 0)
        return None

    def status(self, channel: str, sha256: str) -> tuple[str, int, int, int] | None:
        return self.uploads.get((channel, sha256))

    def done(self, channel: str, sha256: str, status: str, rows_read: int, messages: int, rejected: int) -> None:
        self.uploads[(channel, sha256)] = (status, rows_read, messages, rejected)


class MemoryIdempotency:
    """Twin of `IdempotencyLedger`: keys in a dict, no lease expiry (a claim is held until completed or released)."""

    def __init__(self, journaled: Callable[[str, str], str | None] = lambda _c, _s: None) -> None:
        self.keys: dict[tuple[str, str, str], tuple[str, str, Answer | None]] = {}  # sha, claim, answer
        self._journaled = journaled

    def claim(self, channel: str, client: str, key: str, body_sha256: str) -> State:
        found = self.keys.get((channel, client, key))
        if found is None:
            claim = uuid.uuid4().hex
            self.keys[(channel, client, key)] = (body_sha256, claim, None)
            return Claimed(claim)
        return self._state(found, body_sha256)

    @staticmethod
    def _state(found: tuple[str, str, Answer | None], body_sha256: str) -> State:
        sha, _, answer = found
        if sha != body_sha256:
            return Mismatch()
        return answer if answer is not None else Pending()

    def complete(self, channel: str, client: str, key: str, claim: str, status: int, body: bytes,
                 message_id: str = "") -> bool:
        found = self.keys.get((channel, client, key))
        if found is None or found[1] != claim:
            return False
        self.keys[(channel, client, key)] = (found[0], claim, Answer(status, body, message_id))
        return True

    def release(self, channel: str, client: str, key: str, claim: str) -> None:
        found = self.keys.get((channel, client, key))
        if found is not None and found[1] == claim and found[2] is None:
            del self.keys[(channel, client, key)]

    def state(self, channel: str, client: str, key: str, body_sha256: str) -> State | None:
        found = self.keys.get((channel, client, key))
        return None if found is None else self._state(found, body_sha256)

    def journaled_since(self, channel: str, raw_sha256: str, since: datetime, margin_s: float = 5.0) -> str | None:
        return self._journaled(channel, raw_sha256)


@dataclass
class MemoryPipeline:
    """Twin of `Backpressure` and `MappingSources`: a backlog a test sets, and where CSV maps are."""

    queued: int = 0
    mappings_dir: Path = Path("mappings")
    schema_dir: Path = Path("config/schema")

    def backlog(self) -> int:
        return self.queued


class MemoryInputPorts:
    """Twin of `InputPorts`: admits into `admitted` (in order) and keeps the other ports' records beside it.

    Guarantees the same answers an input relies on from the engine's intake: unreadable bytes are
    refused with their ParseError and recorded as failed; an HL7 v2 ACK is accepted and filtered;
    the same (channel, MSH-4, MSH-10) with the same bytes is a duplicate of the first; with
    `wait_if`, an accepted message's receipt carries a future resolved with `outcome`. Nothing is
    queued or transformed, and there is no duplicate window.
    """

    def __init__(self, *, outcome: Outcome | None = None, pipeline: MemoryPipeline | None = None) -> None:
        self.admitted: list[Admitted] = []
        self._events, self._files = MemoryEvents(), MemoryFiles()
        self._pipeline = pipeline or MemoryPipeline()
        self._idempotency = MemoryIdempotency(self._journaled)
        self.outcome = outcome

    # -- the ports beside admission ----------------------------------------------------------------
    @property
    def events(self) -> MemoryEvents:
        return self._events

    @property
    def files(self) -> MemoryFiles:
        return self._files

    @property
    def idempotency(self) -> MemoryIdempotency:
        return self._idempotency

    @property
    def backpressure(self) -> MemoryPipeline:
        return self._pipeline

    @property
    def messages(self) -> MemoryInputPorts:
        return self

    @property
    def mappings(self) -> MemoryPipeline:
        return self._pipeline

    def get(self, message_id: str) -> MessageRow | None:
        """`MessageLookup`: the row the journal would show for an admitted record."""
        a = next((a for a in self.admitted if a.message_id == message_id), None)
        if a is None:
            return None
        return MessageRow(a.message_id, a.channel, a.received_at, a.message_type, a.control_id, a.sender, a.status,
                          "intake" if a.status == Status.FAILED else "", a.reason, "", len(a.raw),
                          hashlib.sha256(a.raw).hexdigest(), a.raw)

    def _journaled(self, channel: str, raw_sha256: str) -> str | None:
        return next((a.message_id for a in self.admitted
                     if a.channel == channel and hashlib.sha256(a.raw).hexdigest() == raw_sha256), None)

    # -- admission ----------------------------------------------------------------------------------
    async def receive_async(self, channel: ChannelConfig, raw: bytes, *, peer: str = "",
                            senders: frozenset[str] | None = None, client: str = "",
                            executor: Executor | None = None,
                            wait_if: Callable[[Message], bool] | None = None) -> Receipt:
        mid = message_id()
        try:
            msg = parse(decode(raw, encoding_override(channel.options)))
        except (ParseError, UnicodeDecodeError, LookupError) as exc:
            err = exc if isinstance(exc, ParseError) else ParseError("cannot decode the message", code="102")
            self.admitted.append(Admitted(mid, channel.id, raw, status=Status.FAILED, reason=err.message,
                                          detail={"peer": peer}))
            return Receipt(mid, None, False, err, err.message)
        if senders is not None and msg.sending_facility not in senders:
            reason = "sending facility (MSH-4) not authorised for this client certificate"
            self._admit(mid, channel, raw, msg, Status.FAILED, reason, peer)
            return Receipt(mid, msg, False, ParseError(reason, segment="MSH", sequence=1, field=4, code="207"),
                           reason)
        if msg.message_type.split("^")[0] == "ACK":
            reason = "an acknowledgment (MSH-9 ACK): recorded, nothing to transform"
            self._admit(mid, channel, raw, msg, Status.FILTERED, reason, peer)
            return Receipt(mid, msg, True, reason=reason)
        first = next((a for a in self.admitted if (a.channel, a.sender, a.control_id) == (
            channel.id, msg.sending_facility, msg.control_id) and a.status != Status.FAILED), None)
        if first is not None and first.raw == raw:
            return Receipt(first.message_id, msg, True, duplicate_of=first.message_id)
        self._admit(mid, channel, raw, msg, Status.RECEIVED, "", peer)
        reused_of = first.message_id if first is not None else None
        if wait_if is not None and wait_if(msg):
            watching: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
            watching.set_result(self._outcome())
            return Receipt(mid, msg, True, reused_of=reused_of, watching=watching)
        return Receipt(mid, msg, True, reused_of=reused_of)

    def _admit(self, mid: str, channel: ChannelConfig, raw: bytes, msg: Message, status: str, reason: str,
               peer: str) -> None:
        self.admitted.append(Admitted(mid, channel.id, raw, msg.message_type, msg.control_id, msg.sending_facility,
                                      status, reason, {"peer": peer} if peer else {}))

    def _outcome(self) -> Outcome:
        if self.outcome is not None:
            return self.outcome
        return Outcome(Status.TRANSFORMED)

    async def receive_fhir_async(self, channel: ChannelConfig, raw: bytes, *, resource_type: str, control_id: str,
                                 peer: str = "", client: str = "", executor: Executor | None = None) -> Receipt:
        first = next((a for a in self.admitted if control_id and (a.channel, a.sender, a.control_id) == (
            channel.id, client, control_id)), None)
        if first is not None and first.raw == raw:
            return Receipt(first.message_id, None, True, duplicate_of=first.message_id)
        mid = message_id()
        self.admitted.append(Admitted(mid, channel.id, raw, f"FHIR^{resource_type}", control_id, client,
                                      detail={"peer": peer, "client": client} if peer or client else {}))
        return Receipt(mid, None, True, reused_of=first.message_id if first is not None else None)

    async def wait_outcome(self, message_id: str, watching: asyncio.Future[Outcome], timeout: float) -> Outcome:
        return await asyncio.wait_for(watching, timeout)

    def admit_file_records(self, channel: ChannelConfig, groups: list[tuple[bytes, str]],
                           failed: list[tuple[bytes, str, str]], *, message_type: str, sender: str,
                           detail: dict[str, Any], step: FileStep | None = None) -> bool:
        if step is not None and not self._files.advance(channel.id, step):
            return False
        self.admitted += [Admitted(message_id(), channel.id, raw, message_type, cid, sender, detail=dict(detail))
                          for raw, cid in groups]
        self.admitted += [Admitted(message_id(), channel.id, raw, message_type, cid, sender, Status.FAILED, reason,
                                   {**detail, "reason": reason}) for raw, cid, reason in failed]
        return True


class MemoryOutputLedger:
    """Twin of `OutputLedger`: output rows by (message, destination), and every intent recorded, in `writing`.

    A test seeds `messages` (for outputs that read the original) and `rows` (an earlier attempt).
    """

    def __init__(self) -> None:
        self.messages: dict[str, MessageRow] = {}
        self.rows: dict[tuple[str, str], OutputRow] = {}
        self.writing: list[tuple[str, str, str]] = []  # (message id, destination, location)

    def get(self, message_id: str) -> MessageRow | None:
        return self.messages.get(message_id)

    def output(self, message_id: str, destination: str, limit: int | None = None) -> OutputRow | None:
        return self.rows.get((message_id, destination))

    def output_writing(self, message_id: str, destination: str, location: str) -> None:
        self.outputs_writing(destination, [(message_id, location)])

    def outputs_writing(self, destination: str, items: list[tuple[str, str]]) -> None:
        for mid, location in items:
            self.writing.append((mid, destination, location))
            prior = self.rows.get((mid, destination))
            self.rows[(mid, destination)] = OutputRow(mid, destination, "writing",
                                                      (prior.attempts if prior else 0) + 1, location,
                                                      prior.body if prior else b"")
