"""SQLite, the default store: one file, WAL, bodies in their rows, checkpoints on a thread of their own."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

from engine.store import receive
from engine.store.dialect import Dialect
from engine.store.writer import Work

__all__ = ["SQLiteDialect"]

_EMPTY = b""  # an erased body: NOT NULL, and recognised on read


class SQLiteDialect(Dialect):
    """SQLite: owns the journal file's settings (WAL, full sync, incremental vacuum) and its WAL
    checkpoints; guarantees that a commit never waits for a checkpoint it did not need."""

    name: ClassVar[str] = "sqlite"

    @property
    def path(self) -> Path:
        return Path(urlparse(self.url).path)

    def connect(self) -> Any:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file only: retention gives pages back
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # an AA promises the message survives power loss too
        conn.execute("PRAGMA busy_timeout=30000")
        # Checkpoints run on their own thread (`start_upkeep`), not inside a commit someone waits for.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def connect_reader(self) -> Any:
        conn = self.connect()
        conn.isolation_level = None
        return conn

    def begin_migration(self, conn: Any) -> Any:
        conn.isolation_level = None  # the migration issues BEGIN and COMMIT itself
        cur = conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        return cur

    def end_migration(self, conn: Any, cur: Any) -> None:
        cur.execute("COMMIT")
        conn.isolation_level = ""

    def ts(self, value: datetime) -> Any:
        return super().ts(value).isoformat(timespec="microseconds")

    def no_index(self, column: str) -> str:
        return "+" + column  # SQLite's unary + keeps the planner off the column's index

    def meta_insert(self) -> str:
        return "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)"

    def body_of(self, id_expr: str, part_expr: str, column: str) -> str:
        return column

    def bodies_older_than(self) -> str:
        return "SELECT id FROM messages WHERE channel = ? AND received_at < ? AND length(raw) > 0"

    def erase_bodies(self, cur: Any, ids: list[str]) -> None:
        marks = ",".join("?" * len(ids))
        cur.execute(f"UPDATE messages SET raw = ? WHERE id IN ({marks})", (_EMPTY, *ids))
        cur.execute(f"UPDATE outputs SET body = NULL WHERE message_id IN ({marks})", ids)

    def receive_work(self, receipt: receive.Receipt) -> Work:
        return receive.steps(receipt)

    def start_upkeep(self, closing: threading.Event) -> threading.Thread | None:
        thread = threading.Thread(target=self._checkpoints, args=(closing,), name="wasla-journal-checkpoint",
                                  daemon=True)
        thread.start()
        return thread

    def _checkpoints(self, closing: threading.Event, every_s: float = 1.0, wal_max_bytes: int = 64 << 20) -> None:
        """Copy the WAL into the database now and then, off the commit path.

        SQLite's automatic checkpoint would run inside whichever commit crosses the threshold,
        adding its fsync of the database file to that sender's ACK latency. A PASSIVE
        checkpoint never blocks the writer. But under steady traffic a commit always lands just
        after it, so the WAL is never wholly copied when the next write begins and SQLite never
        starts it over: it grows without bound (bench/results/2026-11-25-soak.md). Past `wal_max_bytes` a
        TRUNCATE checkpoint waits for the readers, copies the rest and empties the file; writers
        wait for it (a fraction of a second, once per tens of thousands of messages).
        """
        conn = self.connect()
        wal = Path(urlparse(self.url).path + "-wal")
        try:
            while not closing.wait(every_s):
                with contextlib.suppress(Exception):  # busy or locked: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if wal.exists() and wal.stat().st_size > wal_max_bytes:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()

    def reclaim(self) -> None:
        """Give freed pages back to the file system (new journals are created with auto_vacuum=INCREMENTAL;
        an older file is converted once by a VACUUM)."""
        conn = self.connect()
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
