"""The journal: every message received, every stage it went through, every output it produced.

`Journal` opens the database (engine.store.database) and composes the repositories, one job
each: `messages`, `outputs`, `delivery`, `replays`, `files`, `connections`, `parked`, `audit`,
`keys`, `idempotency` and `retention`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.store.audit import Audit
from engine.store.connections import Connections
from engine.store.database import Clock, Database
from engine.store.delivery import Delivery
from engine.store.files import Files
from engine.store.idempotency import IdempotencyKeys
from engine.store.keys import Keys
from engine.store.messages import MessageRow, Messages, mapping_warnings
from engine.store.outputs import OutputRow, Outputs
from engine.store.parked import Parked
from engine.store.receive import REUSED, KeyMatch
from engine.store.replays import Replay, Replays
from engine.store.retention import Pruned, Retention
from engine.store.writer import Work
from engine.types import Inbound

__all__ = ["REUSED", "Journal", "KeyMatch", "MessageRow", "OutputRow", "Pruned", "Replay", "mapping_warnings",
           "open_journal"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Journal:
    """The one store of a process: owns the open database and the repositories built on it, and
    closes them together. Every read and write of the journal goes through one of its repositories
    (`journal.messages.get(mid)` …); the few methods below only delegate."""

    def __init__(self, url: str, *, group_commit_ms: float = 0.0, clock: Clock = _utcnow) -> None:
        self.db = Database(url, group_commit_ms=group_commit_ms, clock=clock)
        self.messages = Messages(self.db)
        self.outputs = Outputs(self.db)
        self.delivery = Delivery(self.db)
        self.replays = Replays(self.db)
        self.files = Files(self.db)
        self.connections = Connections(self.db)
        self.parked = Parked(self.db, self.messages)
        self.audit = Audit(self.db)
        self.keys = Keys(self.db)
        self.idempotency = IdempotencyKeys(self.db)
        self.retention = Retention(self.db)

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    def close(self) -> None:
        self.db.close()

    # -- used by channels/ until the connector ports land --------------------------------------
    def commit(self, work: Work, timeout: float = 60.0) -> Any:
        # used by channels/ until the connector ports land
        return self.db.commit(work, timeout)

    def receive_work(self, msg: Inbound, detail: dict[str, Any] | None = None, **options: Any) -> Work:
        # used by channels/ until the connector ports land
        return self.messages.receive_work(msg, detail, **options)

    def note(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        # used by channels/ until the connector ports land
        self.messages.note(message_id, stage, status, detail)

    def get(self, message_id: str) -> MessageRow | None:
        # used by channels/ until the connector ports land
        return self.messages.get(message_id)

    def failed(self, message_id: str, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        # used by channels/ until the connector ports land
        self.messages.failed(message_id, stage, reason, detail)

    def output(self, message_id: str, destination: str, limit: int | None = None) -> OutputRow | None:
        # used by channels/ until the connector ports land
        return self.outputs.get(message_id, destination, limit)

    def output_writing(self, message_id: str, destination: str, location: str) -> None:
        # used by channels/ until the connector ports land
        self.outputs.output_writing(message_id, destination, location)

    def outputs_writing(self, destination: str, items: list[tuple[str, str]]) -> None:
        # used by channels/ until the connector ports land
        self.outputs.outputs_writing(destination, items)

    def connection_opened(self, conn_id: str, channel: str, peer: str, client: str = "",
                          outcome: str = "open") -> None:
        # used by channels/ until the connector ports land
        self.connections.opened(conn_id, channel, peer, client, outcome)

    def connection_closed(self, conn_id: str, messages: int, outcome: str = "closed") -> None:
        # used by channels/ until the connector ports land
        self.connections.closed(conn_id, messages, outcome)

    def file_claim(self, channel: str, sha256: str, name: str) -> str | None:
        # used by channels/ until the connector ports land
        return self.files.claim_name(channel, sha256, name)

    def file_status(self, channel: str, sha256: str) -> tuple[str, int, int, int] | None:
        # used by channels/ until the connector ports land
        return self.files.status(channel, sha256)

    def file_done(self, channel: str, sha256: str, status: str, rows_read: int, messages: int, rejected: int) -> None:
        # used by channels/ until the connector ports land
        self.files.done(channel, sha256, status, rows_read, messages, rejected)


def open_journal(url: str, *, group_commit_ms: float = 0.0) -> Journal:
    return Journal(url, group_commit_ms=group_commit_ms)
