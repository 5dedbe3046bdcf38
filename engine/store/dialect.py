"""What differs between SQLite and PostgreSQL, behind one interface: `Dialect`, subclassed per database.

`SQLiteDialect` (engine.store.sqlite) and `PostgresDialect` (engine.store.postgres) hold every SQL
and behaviour difference (connecting, placeholders, time values, where bodies live, locking, the
intake write, upkeep); nothing else in the store asks which database it runs on.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import orjson

from engine.errors import StoreError

if TYPE_CHECKING:
    from engine.store.receive import Receipt
    from engine.store.writer import Work

__all__ = ["Dialect", "dialect_for", "json_text"]

# A JSON \u0000 escape (an even run of backslashes before it, so not an escaped backslash's text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def json_text(value: Any) -> str:
    """A detail column's JSON. PostgreSQL's jsonb refuses the NUL character, which a message's
    field can carry into a warning or a reason: it becomes U+FFFD, as in text columns (`PostgresDialect`)."""
    raw = orjson.dumps(value)
    if b"\\u0000" in raw:
        raw = _NUL_ESCAPE.sub(rb"\1\\ufffd", raw)
    return raw.decode()


@dataclass(frozen=True)
class Dialect(ABC):
    """One database's way of doing what the store needs; a subclass per database.

    Owns the store URL and guarantees that the rest of the store writes `?` placeholders,
    passes time values through `ts`/`from_ts` and reads bodies through `body_of`, whatever
    the database.
    """

    url: str
    name: ClassVar[str]  # the migrations folder (engine/store/migrations/<name>)
    # FOR UPDATE SKIP LOCKED where rows can be claimed concurrently by several processes.
    skip_locked: ClassVar[str] = ""
    # True where nothing else keeps the planner's statistics current (see `analyze_stale`).
    needs_statistics: ClassVar[bool] = False

    # -- connections ------------------------------------------------------------------------
    @abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection for writing (transactions committed by the caller)."""

    @abstractmethod
    def connect_reader(self) -> Any:
        """A new connection for reads, each statement its own transaction."""

    @abstractmethod
    def begin_migration(self, conn: Any) -> Any:
        """Open the migration's transaction on `conn`, holding the schema against other migrators until
        `end_migration`; return its cursor."""

    def end_migration(self, conn: Any, cur: Any) -> None:
        """Commit the migration's transaction (and leave `conn` as `connect` made it)."""
        conn.commit()

    # -- SQL text and values ----------------------------------------------------------------
    def sql(self, statement: str) -> str:
        return statement

    def ts(self, value: datetime) -> Any:
        return value.astimezone(UTC)

    def from_ts(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.fromisoformat(value)

    def blob(self, value: Any) -> bytes:
        return bytes(value) if value is not None else b""

    def no_index(self, column: str) -> str:
        """`column` in a condition the planner should not answer from that column's index."""
        return column

    @abstractmethod
    def meta_insert(self) -> str:
        """INSERT of a (key, value) into `meta` that leaves an existing key alone."""

    # -- bodies -----------------------------------------------------------------------------
    @abstractmethod
    def body_of(self, id_expr: str, part_expr: str, column: str) -> str:
        """The SQL reading a body: of a message (`part_expr` '') or of its output to a destination.
        `column` is the body's column in the row being read (where the database keeps it there)."""

    def output_bodies(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Output rows (message id, destination, status, at, sealed body) split into the rows to upsert
        into `outputs` and the (message id, destination, body) to `write_output_bodies`."""
        return rows, []

    def write_output_bodies(self, cur: Any, bodies: list[tuple[Any, ...]]) -> None:
        """Write what `output_bodies` put apart (nothing where bodies stay in `outputs`)."""
        return None

    @abstractmethod
    def bodies_older_than(self) -> str:
        """SELECT of the ids of a channel's (?) messages received before (?) that still have a body."""

    @abstractmethod
    def erase_bodies(self, cur: Any, ids: list[str]) -> None:
        """Erase these messages' raw and output bodies (the metadata stays)."""

    def delete_bodies(self, cur: Any, ids: list[str]) -> None:
        """Delete the bodies kept apart from these messages' rows, before the rows go."""
        return None

    # -- the intake write -------------------------------------------------------------------
    @abstractmethod
    def receive_work(self, receipt: Receipt) -> Work:
        """The write journaling a received message, with its duplicate check (engine.store.receive)."""

    # -- upkeep -----------------------------------------------------------------------------
    def start_upkeep(self, closing: threading.Event) -> threading.Thread | None:
        """Start the background upkeep the database needs while the store is open (until `closing`)."""
        return None

    def ensure_partitions(self, today: date) -> list[date]:
        """Make the coming days' body partitions, where bodies are partitioned; return those made."""
        return []

    def drop_bodies_before(self, cutoff: datetime) -> list[date]:
        """Drop every day of bodies wholly before `cutoff`, where bodies are partitioned by day."""
        return []

    def analyze_stale(self, *, only_without_autovacuum: bool = True) -> list[str]:
        """Refresh the planner's statistics of the tables that changed much; return them."""
        return []

    @abstractmethod
    def reclaim(self) -> None:
        """Give the space freed by retention back (or make it reusable)."""


def dialect_for(url: str) -> Dialect:
    """The dialect of a store URL: sqlite:///path or postgresql://…"""
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        from engine.store.sqlite import SQLiteDialect

        return SQLiteDialect(url)
    if scheme in ("postgresql", "postgres"):
        from engine.store.postgres import PostgresDialect

        return PostgresDialect(url)
    raise StoreError(f"unsupported store URL scheme '{scheme}': expected sqlite:/// or postgresql://")
