"""Daily partitions of the PostgreSQL `bodies` table: patient data is forgotten a whole day at a time.

Raw HL7 v2 and FHIR outputs — the patient data and nearly all the bytes — live in `bodies`,
partitioned by RANGE on the message id. Ids are UUIDv7: their text starts with the receipt time
in milliseconds, in hex, so a day is the range of ids between two midnights' prefixes (compared
in the "C" collation). Every lookup by id reaches one partition, and retention drops a day's
partition whole: the space goes back to the file system at once, without a vacuum.

Partitions are made ahead (today and the next `AHEAD_DAYS`), at start and on every retention run,
under an advisory lock so several processes do not race. A DEFAULT partition catches whatever
has no day yet (rows migrated from before partitioning, an id from a clock far off); its rows are
erased one by one by the per-channel retention like SQLite's.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from engine.ids import id_floor

__all__ = ["AHEAD_DAYS", "body_of", "day_bound", "drop_before", "ensure", "partitions"]

AHEAD_DAYS = 7
_LOCK = 727366  # advisory lock key: partition DDL, one process at a time
_NAME = re.compile(r"^bodies_(\d{8})$")


def body_of(id_expr: str, part_expr: str) -> str:
    """The SQL reading one body: one partition probed, by id in the "C" collation of the partition key."""
    return f"(SELECT b.body FROM bodies b WHERE b.message_id = {id_expr} COLLATE \"C\" AND b.part = {part_expr})"


def day_bound(day: date) -> str:
    """The smallest UUIDv7 text received on `day` (UTC): its 48-bit millisecond prefix, dashed."""
    return id_floor(int(datetime.combine(day, time(0), tzinfo=UTC).timestamp() * 1000))


def partitions(cur: Any) -> list[date]:
    """The days that have their own partition, oldest first."""
    cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'bodies'")
    days = [datetime.strptime(m.group(1), "%Y%m%d").date() for (name,) in cur.fetchall() if (m := _NAME.match(name))]
    return sorted(days)


def ensure(conn: Any, today: date, ahead: int = AHEAD_DAYS) -> list[date]:
    """Create the partitions of `today` and the next `ahead` days that are missing; return those made.

    A day whose ids already sit in the DEFAULT partition cannot get its own (PostgreSQL refuses):
    it is skipped and stays in DEFAULT, pruned row by row.
    """
    made: list[date] = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        have = set(partitions(cur))
        for n in range(ahead + 1):
            day = today + timedelta(days=n)
            if day in have:
                continue
            cur.execute("SAVEPOINT p")
            try:
                cur.execute(f"CREATE TABLE bodies_{day:%Y%m%d} PARTITION OF bodies"
                            f" FOR VALUES FROM ('{day_bound(day)}') TO ('{day_bound(day + timedelta(days=1))}')")
                cur.execute("RELEASE SAVEPOINT p")
                made.append(day)
            except Exception:  # noqa: BLE001 - rows of that day already in DEFAULT: they stay there
                cur.execute("ROLLBACK TO SAVEPOINT p")
    conn.commit()
    return made


def drop_before(conn: Any, cutoff: date) -> list[date]:
    """Drop the partitions of the days before `cutoff` (the whole day older than the retention)."""
    dropped: list[date] = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
        for day in partitions(cur):
            if day < cutoff:
                cur.execute(f"DROP TABLE bodies_{day:%Y%m%d}")
                dropped.append(day)
    conn.commit()
    return dropped
