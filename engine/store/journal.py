"""The journal: every message received, every stage it went through, every output it produced.

`Journal` opens the database (engine.store.database) and composes the repositories, one job
each: `messages`, `outputs`, `delivery`, `replays`, `files`, `connections`, `parked`, `audit`,
`keys`, `idempotency`, `retention` and `claims`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from engine.store.audit import Audit
from engine.store.claims import Claims
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
        self.claims = Claims(self.db)

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    def close(self) -> None:
        self.db.close()


def open_journal(url: str, *, group_commit_ms: float = 0.0) -> Journal:
    return Journal(url, group_commit_ms=group_commit_ms)
