"""Retention: the journal forgets patient data on time and gives the disk back.

Per channel, after `bodies_days` the raw HL7 v2 and the FHIR outputs are erased (the metadata —
ids, times, statuses, reasons, events — stays, so counts and searches still work); after
`metadata_days` the message goes entirely, with its events and outputs. Work is done in batches
of a few thousand rows, each its own short transaction, so intake never waits long behind it.

SQLite gives the freed pages back with `PRAGMA incremental_vacuum` (new journals are created
with auto_vacuum=INCREMENTAL; an older file is converted once by a VACUUM). On PostgreSQL the
bodies live in daily partitions (engine.store.partitions): the days older than the longest body
retention of any channel are dropped whole (`drop_bodies_before`, space back at once), and a
channel with a shorter retention has its bodies deleted row by row; metadata rows are deleted in
batches and their space reused after autovacuum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from engine.store.database import Database

__all__ = ["Pruned", "Retention"]


@dataclass
class Pruned:
    """What a `prune` removed: messages whose body was erased, messages deleted whole."""

    bodies: int = 0
    messages: int = 0


class Retention:
    """Owns forgetting patient data on time (per channel) and giving the space back, through the
    dialect's upkeep. Guarantees that work is done in short batches, each its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def prune(self, channel: str, bodies_days: float, metadata_days: float, batch: int = 5000) -> Pruned:
        """Erase the channel's bodies older than `bodies_days`, delete its messages older than `metadata_days`."""
        db = self.db
        now = db.clock()
        bodies_before = db.dialect.ts(now - timedelta(days=bodies_days))
        metadata_before = db.dialect.ts(now - timedelta(days=metadata_days))
        done = Pruned()
        while ids := [str(r[0]) for r in db.query(
                f"SELECT id FROM messages WHERE channel = ? AND received_at < ? LIMIT {int(batch)}",
                (channel, metadata_before))]:
            db.commit(partial(self._delete, ids=ids))
            done.messages += len(ids)
        with_body = db.dialect.bodies_older_than()
        while ids := [str(r[0]) for r in db.query(f"{with_body} LIMIT {int(batch)}", (channel, bodies_before))]:
            db.commit(partial(db.dialect.erase_bodies, ids=ids))
            done.bodies += len(ids)
        return done

    def _delete(self, cur: Any, ids: list[str]) -> None:
        marks = ",".join("?" * len(ids))
        self.db.dialect.delete_bodies(cur, ids)
        for table, col in (("events", "message_id"), ("outputs", "message_id"), ("parked", "message_id"),
                           ("replays", "message_id"), ("lanes", "message_id"), ("messages", "id")):
            cur.execute(self.db.sql(f"DELETE FROM {table} WHERE {col} IN ({marks})"), ids)

    def analyze_stale(self, *, only_without_autovacuum: bool = True) -> list[str]:
        """Refresh the planner's statistics of the tables that changed much, where nothing else does
        (PostgreSQL without autovacuum); return the tables analyzed."""
        return self.db.dialect.analyze_stale(only_without_autovacuum=only_without_autovacuum)

    def ensure_partitions(self) -> list[date]:
        """Make today's body partition and the next days' where bodies are partitioned (at start, and
        each retention run)."""
        return self.db.dialect.ensure_partitions(self.db.clock().date())

    def drop_bodies_before(self, cutoff: datetime) -> list[date]:
        """Drop every day of bodies wholly before `cutoff` where bodies are partitioned by day; return
        the days dropped. The caller passes now minus the *longest* body retention of all channels."""
        return self.db.dialect.drop_bodies_before(cutoff)

    def reclaim(self) -> None:
        """Give freed pages back to the file system (SQLite); on PostgreSQL make them reusable."""
        self.db.dialect.reclaim()
