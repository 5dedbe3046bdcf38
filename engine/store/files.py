"""Files taken in by file channels (CSV drop, CSV over REST): claimed once by their bytes, read exactly once.

A file is known by the SHA-256 of its bytes as claimed (and, when it grew while being read, of its
whole content at the end): the same bytes dropped again, under any name, are not taken twice. While
it is read, `advance` is written in the same transaction as the rows it covers: every row before
`next_offset` is journaled, none after. A file left half-read (a crash, a stop) is resumed from
there. `advance` is a compare-and-set on the offset, so two takers of the same file (a copy dropped
again while the first is read, two engines on one folder) can never both journal a row: the one
whose progress moved on first wins, the other is told to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.store.database import Database, HasDatabase, database_of
from engine.store.writer import Work

__all__ = ["FileClaim", "FileProgress", "Files"]

_COLS = ("sha256, name, status, size, mtime_ns, encoding, next_offset, next_line, rejects_bytes, rows_read,"
         " messages, rejected")


@dataclass(frozen=True, slots=True)
class FileProgress:
    """How far a file was taken in: every row before `offset` (line `line`) is journaled."""

    offset: int = 0
    line: int = 1
    rejects_bytes: int = 0   # the reject file's length at that point (what follows is written again)
    rows: int = 0
    messages: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class FileClaim:
    """A file's claim: its identity, how it was read, and whether it was claimed just now."""

    sha256: str
    name: str
    status: str              # processing | done | failed
    size: int                # bytes the SHA-256 covers (the file as claimed)
    mtime_ns: int
    encoding: str            # the encoding decided at the first reading ('' for the layout's)
    progress: FileProgress
    new: bool = False        # claimed now (else: seen before, `status` says how it went)


def _claim(r: tuple[Any, ...], new: bool = False) -> FileClaim:
    return FileClaim(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), str(r[5]),
                     FileProgress(int(r[6]), max(int(r[7]), 1), int(r[8]), int(r[9]), int(r[10]), int(r[11])), new)


class Files:
    """The `files` table: owns the claims of files taken in by file channels and their progress.
    Guarantees that the same bytes are claimed once per channel and that a file's progress moves
    on in the transaction of the rows it covers, by one taker only (see the module doc)."""

    def __init__(self, db: Database | HasDatabase) -> None:
        self.db = database_of(db)
        self._sql = self.db.sql

    def claim(self, channel: str, sha256: str, name: str, *, size: int, mtime_ns: int, encoding: str) -> FileClaim:
        """Claim a file by its bytes: a new claim, or the earlier one (done, failed or still processing)."""
        now = self.db.now()
        find = self._sql(f"SELECT {_COLS} FROM files WHERE channel = ? AND sha256 = ?"
                         f" UNION ALL SELECT {_COLS} FROM files WHERE channel = ? AND sha256_end = ?")
        insert = self._sql("INSERT INTO files (channel, sha256, name, received_at, status, size, mtime_ns, encoding,"
                           " next_offset, next_line) VALUES (?, ?, ?, ?, 'processing', ?, ?, ?, 0, 1)"
                           " ON CONFLICT (channel, sha256) DO NOTHING")

        def work(cur: Any) -> FileClaim:
            cur.execute(find, (channel, sha256, channel, sha256))
            found = cur.fetchone()
            if found is not None:
                return _claim(found)
            cur.execute(insert, (channel, sha256, name, now, size, mtime_ns, encoding))
            return FileClaim(sha256, name, "processing", size, mtime_ns, encoding, FileProgress(), new=True)

        return self.db.commit(work)

    def processing(self, channel: str, name: str) -> list[FileClaim]:
        """Claims of this name still being read: a file found in processing/ that grew after its claim
        is one of these (its first `size` bytes hash to the claim's SHA-256)."""
        rows = self.db.query(f"SELECT {_COLS} FROM files WHERE channel = ? AND name = ?"
                                   " AND status = 'processing'", (channel, name))
        return [_claim(r) for r in rows]

    def get(self, channel: str, sha256: str) -> FileClaim | None:
        rows = self.db.query(f"SELECT {_COLS} FROM files WHERE channel = ? AND sha256 = ?",
                                   (channel, sha256))
        return _claim(rows[0]) if rows else None

    def advance_work(self, channel: str, sha256: str, before: FileProgress, after: FileProgress,
                     then: Sequence[Work] = (), *, status: str = "processing", sha256_end: str = "") -> Work:
        """A write moving the file's progress from `before` to `after`, then running `then` (the rows it
        covers) in the same transaction. Its result is False, and nothing is written, when the progress
        is no longer `before` (another taker moved it on, or the file is no longer being read)."""
        sql = self._sql("UPDATE files SET next_offset = ?, next_line = ?, rejects_bytes = ?, rows_read = ?,"
                        " messages = ?, rejected = ?, status = ?, sha256_end = ?"
                        " WHERE channel = ? AND sha256 = ? AND status = 'processing' AND next_offset = ?"
                        " AND rows_read = ?")
        params = (after.offset, after.line, after.rejects_bytes, after.rows, after.messages, after.rejected,
                  status, sha256_end, channel, sha256, before.offset, before.rows)
        works = list(then)

        def work(cur: Any) -> bool:
            cur.execute(sql, params)
            if cur.rowcount != 1:
                return False
            for w in works:
                w(cur)
            return True

        return work

    def advance(self, channel: str, sha256: str, before: FileProgress, after: FileProgress,
                then: Sequence[Work] = (), *, status: str = "processing", sha256_end: str = "") -> bool:
        """`advance_work`, committed; True when it was written."""
        return bool(self.db.commit(self.advance_work(channel, sha256, before, after, then, status=status,
                                                          sha256_end=sha256_end)))

    def fail(self, channel: str, sha256: str) -> None:
        """A file that could not be read at all (its rows journaled so far stay, with their counts)."""
        sql = self._sql("UPDATE files SET status = 'failed' WHERE channel = ? AND sha256 = ?")
        self.db.commit(lambda cur: cur.execute(sql, (channel, sha256)))

    # -- whole-file claims (the REST channel's CSV upload) ------------------------------------------
    def claim_name(self, channel: str, sha256: str, name: str) -> str | None:
        """Record a file about to be taken in whole; returns the name it had when seen before (then skip it)."""
        now = self.db.now()

        def work(cur: Any) -> str | None:
            cur.execute(self._sql("SELECT name FROM files WHERE channel = ? AND sha256 = ?"), (channel, sha256))
            found = cur.fetchone()
            if found is not None:
                return str(found[0])
            cur.execute(self._sql("INSERT INTO files (channel, sha256, name, received_at, status)"
                                  " VALUES (?,?,?,?,'processing')"), (channel, sha256, name, now))
            return None

        return self.db.commit(work)

    def status(self, channel: str, sha256: str) -> tuple[str, int, int, int] | None:
        """(status, rows read, messages, rejected) of a file, or None if not seen."""
        rows = self.db.query("SELECT status, rows_read, messages, rejected FROM files WHERE channel = ? AND sha256 = ?",
                             (channel, sha256))
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2]), int(rows[0][3])) if rows else None

    def done(self, channel: str, sha256: str, status: str, rows_read: int, messages: int, rejected: int) -> None:
        """Record how a whole-file claim ended."""
        def work(cur: Any) -> None:
            cur.execute(self._sql("UPDATE files SET status = ?, rows_read = ?, messages = ?, rejected = ?"
                                  " WHERE channel = ? AND sha256 = ?"),
                        (status, rows_read, messages, rejected, channel, sha256))

        self.db.commit(work)
