"""The journal's database: its dialect, connections, the group-commit writer, reads and sealing.

Writes go through one group-commit writer per process; reads use a connection per thread.
Bodies are zlib-compressed, and encrypted when WASLA_JOURNAL_KEY is set (engine.store.sealing).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any, Protocol

from engine.errors import StoreError
from engine.store.dialect import Dialect, dialect_for, json_text
from engine.store.migrate import migrate
from engine.store.sealing import Sealer
from engine.store.writer import GroupCommitWriter, LoopCommitter, Work

__all__ = ["Clock", "Database", "EventRow", "HasDatabase", "database_of", "many"]

Clock = Callable[[], datetime]
EventRow = tuple[str, str, str, dict[str, Any] | None]  # message id, stage, status, detail


def _utcnow() -> datetime:
    return datetime.now(UTC)


def many(cur: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """executemany, except for one row: psycopg runs executemany as a pipeline, two extra round trips."""
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    elif rows:
        cur.executemany(sql, rows)


class Database:
    """One journal database, open: owns its dialect, the schema migration at open, the
    group-commit writer, a read connection per thread, the sealer of bodies, the clock and the
    dialect's background upkeep. Guarantees that a write returned by `commit` is durable, that a
    read which lost its connection is tried once more, and that `close` ends every connection and
    thread it started. Repositories (engine.store.messages …) do all their SQL through it.
    """

    def __init__(self, url: str, *, group_commit_ms: float = 0.0, clock: Clock = _utcnow) -> None:
        self.dialect: Dialect = dialect_for(url)
        self.clock = clock
        self.sealer = Sealer()  # zlib, and AES-GCM when WASLA_JOURNAL_KEY is set
        conn = self.dialect.connect()
        try:
            self.schema_version = migrate(self.dialect, conn)
        finally:
            conn.close()
        self.dialect.ensure_partitions(self.clock().date())
        self._local = threading.local()
        self._readers: list[Any] = []
        self._writer = GroupCommitWriter(self.dialect.connect, max_wait_ms=group_commit_ms)
        self._committers: dict[asyncio.AbstractEventLoop, LoopCommitter] = {}
        self._closing = threading.Event()
        self._upkeep = self.dialect.start_upkeep(self._closing)

    # -- SQL and values ---------------------------------------------------------------------
    def sql(self, statement: str) -> str:
        """`statement`, written with `?` placeholders, in the dialect's."""
        return self.dialect.sql(statement)

    def now(self) -> Any:
        """The clock's time now, as the database stores it."""
        return self.dialect.ts(self.clock())

    # -- reads ------------------------------------------------------------------------------
    def _reader(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect_reader()
            self._local.conn = conn
            self._readers.append(conn)
        return conn

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read on this thread's connection; one that broke (PostgreSQL restarted, a network
        cut) is replaced and the read tried once more: a read changes nothing, so repeating it is safe.
        A connection still lost then is a StoreError, as a failed write is: workers hold their batch."""
        for attempt in (1, 2):
            conn = self._reader()
            try:
                cur = conn.cursor()
                cur.execute(self.sql(sql), params)
                return list(cur.fetchall())
            except Exception as exc:
                if not (getattr(conn, "broken", False) or getattr(conn, "closed", False)):
                    raise
                self._local.conn = None
                with contextlib.suppress(Exception):  # already broken: closing is best effort
                    conn.close()
                with contextlib.suppress(ValueError):
                    self._readers.remove(conn)
                if attempt == 2:
                    raise StoreError(f"journal unavailable: {exc.__class__.__name__}") from exc
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Raise if the journal does not answer (readiness)."""
        self.query("SELECT 1")

    # -- writes -----------------------------------------------------------------------------
    def _committer(self) -> LoopCommitter | None:
        """The group commit of the event loop running on this thread, if one is."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        committer = self._committers.get(loop)
        if committer is None:
            committer = self._committers[loop] = LoopCommitter(self._writer, loop)
        return committer

    def commit(self, work: Work, timeout: float = 60.0) -> Any:
        """From a plain thread: `work` committed by the writer thread (group commit); its result."""
        return self._writer.run(work, timeout)

    def submit(self, work: Work, *, lazy: bool = False) -> Future[Any]:
        """Queue `work` for the writer thread; the future resolves once the commit holding it is durable.
        `lazy` work rides along with the next commit someone waits for."""
        return self._writer.submit(work, lazy=lazy)

    def commit_async(self, work: Work) -> asyncio.Future[Any]:
        """From an event loop: `work` committed on the loop's thread with this iteration's other work."""
        committer = self._committer()
        if committer is None:
            raise RuntimeError("commit_async needs a running event loop")
        return committer.submit(work)

    def flush_loop(self) -> None:
        """Commit the running loop's lazy work now (before the loop ends)."""
        committer = self._committer()
        if committer is not None:
            committer.flush()
            self._committers.pop(asyncio.get_running_loop(), None)

    def lazy(self, work: Work) -> None:
        """Commit `work` soon, with the next commit of this loop (or of the writer thread)."""
        committer = self._committer()
        if committer is not None:
            committer.lazy(work)
        else:
            self._writer.submit(work, lazy=True)

    def write_events(self, cur: Any, events: list[EventRow], at: Any) -> None:
        """Insert events (message id, stage, status, detail) timed `at`, inside a write."""
        sql = self.sql("INSERT INTO events (message_id, at, stage, status, detail) VALUES (?, ?, ?, ?, ?)")
        many(cur, sql, [(mid, at, stage, status, json_text(detail or {})) for mid, stage, status, detail in events])

    def close(self) -> None:
        self._closing.set()
        if self._upkeep is not None:
            self._upkeep.join(5)
        self._writer.close()
        for conn in self._readers:
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                conn.close()


class HasDatabase(Protocol):
    """Anything holding an open journal database (the `Journal`)."""

    @property
    def db(self) -> Database: ...


def database_of(source: Database | HasDatabase) -> Database:
    """The database itself, or the one a `Journal` holds (channels/ pass the journal until the
    connector ports land)."""
    return source if isinstance(source, Database) else source.db
