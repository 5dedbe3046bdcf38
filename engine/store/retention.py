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

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from engine.store import partitions

__all__ = ["Pruned", "RetentionMixin"]

_EMPTY = b""  # an erased body: NOT NULL, and recognised on read
_STATS_LOCK = 727367  # advisory lock key: one process gathers the journal's statistics at a time
# The tables the hot path reads through a choice of indexes (bodies are only read by their key).
_HOT_TABLES = ("messages", "events", "outputs", "lanes", "replays", "parked")


@dataclass
class Pruned:
    bodies: int = 0
    messages: int = 0


class RetentionMixin:
    """Mixed into Journal: uses its writer (`_writer`), reads (`_query`), dialect and clock."""

    _writer: Any
    dialect: Any
    clock: Callable[[], datetime]
    _sql: Callable[[str], str]
    _query: Callable[..., list[tuple[Any, ...]]]

    def prune(self, channel: str, bodies_days: float, metadata_days: float, batch: int = 5000) -> Pruned:
        now = self.clock()
        bodies_before = self.dialect.ts(now - timedelta(days=bodies_days))
        metadata_before = self.dialect.ts(now - timedelta(days=metadata_days))
        done = Pruned()
        while ids := [str(r[0]) for r in self._query(
                f"SELECT id FROM messages WHERE channel = ? AND received_at < ? LIMIT {int(batch)}",
                (channel, metadata_before))]:
            self._writer.run(lambda cur, ids=ids: self._delete(cur, ids))
            done.messages += len(ids)
        pg = self.dialect.name == "postgresql"
        with_body = ("SELECT m.id FROM messages m JOIN bodies b ON b.message_id = m.id COLLATE \"C\" AND b.part = ''"
                     " WHERE m.channel = ? AND m.received_at < ?" if pg else
                     "SELECT id FROM messages WHERE channel = ? AND received_at < ? AND length(raw) > 0")
        while ids := [str(r[0]) for r in self._query(f"{with_body} LIMIT {int(batch)}", (channel, bodies_before))]:
            marks = ",".join("?" * len(ids))

            def erase(cur: Any, ids: list[str] = ids, marks: str = marks) -> None:
                if pg:
                    cur.execute(self._sql(f"DELETE FROM bodies WHERE message_id IN ({marks})"), ids)
                    return
                cur.execute(self._sql(f"UPDATE messages SET raw = ? WHERE id IN ({marks})"), (_EMPTY, *ids))
                cur.execute(self._sql(f"UPDATE outputs SET body = NULL WHERE message_id IN ({marks})"), ids)

            self._writer.run(erase)
            done.bodies += len(ids)
        return done

    def _delete(self, cur: Any, ids: list[str]) -> None:
        marks = ",".join("?" * len(ids))
        if self.dialect.name == "postgresql":
            cur.execute(self._sql(f"DELETE FROM bodies WHERE message_id IN ({marks})"), ids)
        for table, col in (("events", "message_id"), ("outputs", "message_id"), ("parked", "message_id"),
                           ("replays", "message_id"), ("lanes", "message_id"), ("messages", "id")):
            cur.execute(self._sql(f"DELETE FROM {table} WHERE {col} IN ({marks})"), ids)

    def analyze_stale(self, *, only_without_autovacuum: bool = True) -> list[str]:
        """PostgreSQL: ANALYZE the journal's tables whose rows changed by more than autovacuum's own
        threshold (50 rows + 10 %) since their last statistics; return the tables analyzed.

        Where autovacuum is off (as on this project's test machine) nothing else ever gathers
        statistics, and the planner keeps guessing as for an empty table: the RabbitMQ soak saw an
        output's body upsert walk every delivered output of the destination through
        (destination, status) instead of the primary key. One process does it at a time (advisory
        lock); where autovacuum runs, it is left to autovacuum.
        """
        if self.dialect.name != "postgresql":
            return []
        conn = self.dialect.connect()
        try:
            conn.autocommit = True  # ANALYZE of several tables, each its own transaction
            if only_without_autovacuum and conn.execute("SHOW autovacuum").fetchone()[0] == "on":
                return []
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_STATS_LOCK,)).fetchone()[0]:
                return []
            try:
                stale = [str(r[0]) for r in conn.execute(
                    "SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                    " WHERE s.relname = ANY(%s) AND s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0)",
                    (list(_HOT_TABLES),)).fetchall()]
                for table in stale:
                    conn.execute(f"ANALYZE {table}")
                return stale
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_STATS_LOCK,))
        finally:
            conn.close()

    def _vacuum_if_no_autovacuum(self) -> None:
        conn = self.dialect.connect()
        try:
            conn.autocommit = True  # VACUUM cannot run inside a transaction
            if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
                return
            for table in ("messages", "events", "outputs", "bodies", "lanes", "replays", "parked"):
                conn.execute(f"VACUUM (ANALYZE) {table}")
        finally:
            conn.close()

    def ensure_partitions(self) -> list[date]:
        """PostgreSQL: make today's body partition and the next days' (at start, and each retention run)."""
        if self.dialect.name != "postgresql":
            return []
        conn = self.dialect.connect()
        try:
            return partitions.ensure(conn, self.clock().date())
        finally:
            conn.close()

    def drop_bodies_before(self, cutoff: datetime) -> list[date]:
        """PostgreSQL: drop every day of bodies wholly before `cutoff`; return the days dropped.

        The caller passes now minus the *longest* body retention of all channels, so no channel
        loses a body early; shorter retentions are then met row by row by `prune`.
        """
        if self.dialect.name != "postgresql":
            return []
        conn = self.dialect.connect()
        try:
            return partitions.drop_before(conn, cutoff.date())
        finally:
            conn.close()

    def reclaim(self) -> None:
        """Give freed pages back to the file system (SQLite); on PostgreSQL make them reusable.

        PostgreSQL's autovacuum does that; where it is switched off (it is on this project's test
        machine) the deleted rows would stay as dead tuples that every index scan walks, and the
        soak saw the intake's insert slow down fourfold. Then the journal vacuums what it pruned.
        """
        if self.dialect.name == "postgresql":
            self._vacuum_if_no_autovacuum()
            return
        if self.dialect.name != "sqlite":
            return
        conn = self.dialect.connect()
        try:
            mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
            if mode != 2:  # a journal made before retention existed: converted once
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
                conn.execute("VACUUM")
            else:
                conn.executescript("PRAGMA incremental_vacuum;")  # stepped to the end: one execute frees one page
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()
