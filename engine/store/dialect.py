"""What differs between SQLite and PostgreSQL: connecting, placeholders, time values, locking."""

from __future__ import annotations

import functools
import re
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from engine.errors import StoreError

__all__ = ["Dialect", "dialect_for", "json_text"]

# A JSON \u0000 escape (an even run of backslashes before it, so not an escaped backslash's text).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def json_text(value: Any) -> str:
    """A detail column's JSON. PostgreSQL's jsonb refuses the NUL character, which a message's
    field can carry into a warning or a reason: it becomes U+FFFD, as in text columns (`Dialect.connect`)."""
    raw = orjson.dumps(value)
    if b"\\u0000" in raw:
        raw = _NUL_ESCAPE.sub(rb"\1\\ufffd", raw)
    return raw.decode()


@dataclass(frozen=True)
class Dialect:
    name: str
    url: str

    def connect(self) -> Any:
        if self.name == "sqlite":
            path = Path(urlparse(self.url).path)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a new file only: retention gives pages back
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # an AA promises the message survives power loss too
            conn.execute("PRAGMA busy_timeout=30000")
            # Checkpoints run on their own thread (Journal), not inside a commit someone waits for.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            return conn
        import psycopg

        try:
            conn = psycopg.connect(self.url.replace("postgres://", "postgresql://", 1), connect_timeout=10)
        except psycopg.OperationalError as exc:
            where = urlparse(self.url)
            raise StoreError(f"cannot connect to PostgreSQL at {where.hostname}:{where.port or 5432}") from exc
        # Every execution is planned with its own values. psycopg prepares a statement after five
        # runs and PostgreSQL may then keep one generic plan for good; the journal's tables start
        # empty, so that plan was chosen for an empty table and was never revisited without an
        # ANALYZE (autovacuum off): the soak's duplicate check walked every message of the sender
        # through (sender, received_at), and intake fell from 330/s to 120/s in 90 s.
        conn.execute("SET plan_cache_mode = force_custom_plan")
        conn.commit()
        conn.adapters.register_dumper(str, _nul_free_str())
        return conn

    def sql(self, statement: str) -> str:
        return statement if self.name == "sqlite" else statement.replace("?", "%s")

    def ts(self, value: datetime) -> Any:
        value = value.astimezone(UTC)
        return value.isoformat(timespec="microseconds") if self.name == "sqlite" else value

    def from_ts(self, value: Any) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.fromisoformat(value)

    def blob(self, value: Any) -> bytes:
        return bytes(value) if value is not None else b""

    def lock_for_migration(self, cur: Any) -> None:
        if self.name == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
        else:
            cur.execute("SELECT pg_advisory_xact_lock(727365)")  # one migrator at a time across processes


def dialect_for(url: str) -> Dialect:
    scheme = url.split(":", 1)[0]
    if scheme == "sqlite":
        return Dialect("sqlite", url)
    if scheme in ("postgresql", "postgres"):
        return Dialect("postgresql", url)
    raise StoreError(f"unsupported store URL scheme '{scheme}': expected sqlite:/// or postgresql://")


@functools.cache
def _nul_free_str() -> type:
    """psycopg's text dumper, NUL-free (imported here: a SQLite-only journal never loads psycopg)."""
    from psycopg.types.string import StrDumperUnknown

    class NulFreeStr(StrDumperUnknown):
        """PostgreSQL text cannot hold NUL (0x00); HL7 v2 text should not either, yet a sender's
        MSH-10 or OBX code can. Refused, the write failed again at every try: intake answered AE
        for ever, a transform batch was held for ever. Written as U+FFFD instead; the raw bytes
        (bytea) keep the original."""

        def dump(self, obj: str) -> bytes | bytearray | memoryview:
            return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)

    return NulFreeStr

