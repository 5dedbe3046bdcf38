"""PostgreSQL: bodies apart in daily partitions, one-statement intake writes, upkeep where autovacuum is off."""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Any, ClassVar
from urllib.parse import urlparse

from engine.errors import StoreError
from engine.store import partitions, receive
from engine.store.dialect import Dialect
from engine.store.writer import Work

__all__ = ["PostgresDialect"]

_STATS_LOCK = 727367  # advisory lock key: one process gathers the journal's statistics at a time
# The tables the hot path reads through a choice of indexes (bodies are only read by their key).
_HOT_TABLES = ("messages", "events", "outputs", "lanes", "replays", "parked")

# An output's body to its day's partition; a delivered output's body stays as it was delivered.
OUTPUT_BODY = (
    "INSERT INTO bodies (message_id, part, body) VALUES (%s,%s,%s) ON CONFLICT (message_id, part) DO UPDATE"
    " SET body = excluded.body WHERE NOT EXISTS (SELECT 1 FROM outputs o"
    " WHERE o.message_id = bodies.message_id COLLATE \"default\""
    " AND o.destination = bodies.part AND o.status = 'delivered')")


class PostgresDialect(Dialect):
    """PostgreSQL: owns the `bodies` table's daily partitions (engine.store.partitions), the
    connection settings (custom plans, NUL-free text) and the upkeep autovacuum would do; guarantees
    that raw and output bodies are read and written in `bodies`, never in `messages`/`outputs`."""

    name: ClassVar[str] = "postgresql"
    skip_locked: ClassVar[str] = " FOR UPDATE SKIP LOCKED"
    needs_statistics: ClassVar[bool] = True

    def connect(self) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), connect_timeout=10)
        except psycopg.OperationalError as exc:
            where = urlparse(self.url)
            raise StoreError(f"cannot connect to PostgreSQL at {where.hostname}:{where.port or 5432}") from exc
        # Every execution is planned with its own values. psycopg prepares a statement after five
        # runs and PostgreSQL may then keep one generic plan for good; the journal's tables start
        # empty, so such a plan is chosen for an empty table and, without an ANALYZE (autovacuum
        # off), never revisited: the duplicate check would walk every message of the sender through
        # (sender, received_at) (bench/results/2026-11-25-soak.md).
        conn.execute("SET plan_cache_mode = force_custom_plan")
        conn.commit()
        conn.adapters.register_dumper(str, _nul_free_str())
        return conn

    def connect_reader(self) -> Any:
        conn = self.connect()
        conn.autocommit = True
        return conn

    def begin_migration(self, conn: Any) -> Any:
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(727365)")  # one migrator at a time across processes
        return cur

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def meta_insert(self) -> str:
        return "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"

    # -- bodies -----------------------------------------------------------------------------
    def body_of(self, id_expr: str, part_expr: str, column: str) -> str:
        return partitions.body_of(id_expr, part_expr)

    def output_bodies(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        bodies = [(mid, dest, body) for mid, dest, _, _, body in rows]
        return [(mid, dest, status, at, None) for mid, dest, status, at, _ in rows], bodies

    def write_output_bodies(self, cur: Any, bodies: list[tuple[Any, ...]]) -> None:
        if len(bodies) == 1:  # psycopg runs executemany as a pipeline: two extra round trips
            cur.execute(OUTPUT_BODY, bodies[0])
        elif bodies:
            cur.executemany(OUTPUT_BODY, bodies)

    def bodies_older_than(self) -> str:
        return ("SELECT m.id FROM messages m JOIN bodies b ON b.message_id = m.id COLLATE \"C\" AND b.part = ''"
                " WHERE m.channel = ? AND m.received_at < ?")

    def erase_bodies(self, cur: Any, ids: list[str]) -> None:
        self.delete_bodies(cur, ids)

    def delete_bodies(self, cur: Any, ids: list[str]) -> None:
        marks = ",".join(["%s"] * len(ids))
        cur.execute(f"DELETE FROM bodies WHERE message_id IN ({marks})", ids)

    def receive_work(self, receipt: receive.Receipt) -> Work:
        return receive.one_statement(receipt)

    # -- upkeep -----------------------------------------------------------------------------
    def ensure_partitions(self, today: date) -> list[date]:
        conn = self.connect()
        try:
            return partitions.ensure(conn, today)
        finally:
            conn.close()

    def drop_bodies_before(self, cutoff: datetime) -> list[date]:
        """Drop every day of bodies wholly before `cutoff`; return the days dropped.

        The caller passes now minus the *longest* body retention of all channels, so no channel
        loses a body early; shorter retentions are then met row by row by the retention's `prune`.
        """
        conn = self.connect()
        try:
            return partitions.drop_before(conn, cutoff.date())
        finally:
            conn.close()

    def analyze_stale(self, *, only_without_autovacuum: bool = True) -> list[str]:
        """ANALYZE the journal's tables whose rows changed by more than autovacuum's own threshold
        (50 rows + 10 %) since their last statistics; return the tables analyzed.

        Where autovacuum is off nothing else ever gathers statistics, and the planner keeps guessing
        as for an empty table: an output's body upsert would walk every delivered output of the
        destination through (destination, status) instead of the primary key. One process does it
        at a time (advisory lock); where autovacuum runs, it is left to autovacuum.
        """
        conn = self.connect()
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

    def reclaim(self) -> None:
        """Make the space freed by retention reusable. Autovacuum does that; where it is switched off
        the deleted rows would stay as dead tuples that every index scan walks, slowing the intake's
        insert (bench/results/2026-11-25-soak.md). Then the journal vacuums what it pruned."""
        conn = self.connect()
        try:
            conn.autocommit = True  # VACUUM cannot run inside a transaction
            if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
                return
            for table in ("messages", "events", "outputs", "bodies", "lanes", "replays", "parked"):
                conn.execute(f"VACUUM (ANALYZE) {table}")
        finally:
            conn.close()


@functools.cache
def _nul_free_str() -> type:
    """psycopg's text dumper, NUL-free (imported here: a SQLite-only journal never loads psycopg)."""
    from psycopg.types.string import StrDumperUnknown

    class NulFreeStr(StrDumperUnknown):
        """PostgreSQL text cannot hold NUL (0x00); HL7 v2 text should not either, yet a sender's
        MSH-10 or OBX code can. Refused, the write would fail again at every try (intake answering
        AE, a transform batch held, for ever), so NUL is written as U+FFFD; the raw bytes (bytea)
        keep the original."""

        def dump(self, obj: str) -> bytes | bytearray | memoryview | None:
            return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)

    return NulFreeStr
