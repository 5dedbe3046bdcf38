"""Replay requests: an operator asks, whichever process runs the stage takes the request and replays."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.store.database import Database
from engine.types import Status

__all__ = ["Replay", "Replays"]


@dataclass(frozen=True, slots=True)
class Replay:
    """One request to replay a message through a stage, as taken by a worker."""

    id: int
    message_id: str
    mode: str            # transform | deliver
    destination: str     # deliver: the destination ('' = every output of the message)
    requested_by: str


class Replays:
    """The `replays` table: owns the requests to replay messages and their selection by filter.
    Guarantees that each request is taken by one process only, and that a taken message is in
    flight again (not final) until it is delivered or fails anew."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def request(self, message_ids: list[str], mode: str, destination: str = "", by: str = "") -> int:
        """Ask the running engine to replay these messages; returns how many were queued."""
        db = self.db
        now = db.now()
        ins = db.sql("INSERT INTO replays (message_id, mode, destination, requested_at, requested_by)"
                     " VALUES (?,?,?,?,?)")

        def work(cur: Any) -> int:
            cur.executemany(ins, [(mid, mode, destination, now, by) for mid in message_ids])
            db.write_events(cur, [(mid, "replay", "requested", {"mode": mode, "destination": destination, "by": by})
                                  for mid in message_ids], now)
            return len(message_ids)

        return int(db.commit(work))

    def take(self, modes: tuple[str, ...], limit: int = 200) -> list[Replay]:
        """Claim up to `limit` replay requests for these stages (each is taken by one process only)."""
        db = self.db
        marks = ",".join("?" * len(modes))
        select = db.sql(f"SELECT id, message_id, mode, destination, requested_by FROM replays"
                        f" WHERE mode IN ({marks}) ORDER BY id LIMIT {int(limit)}{db.dialect.skip_locked}")
        delete = db.sql("DELETE FROM replays WHERE id = ?")
        now = db.now()

        def work(cur: Any) -> list[Replay]:
            cur.execute(select, modes)
            taken = [Replay(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in cur.fetchall()]
            if not taken:
                return []
            cur.executemany(delete, [(r.id,) for r in taken])
            for r in taken:  # the message is in flight again: not final until it is delivered or fails anew
                status = Status.RECEIVED if r.mode == "transform" else Status.TRANSFORMED
                cur.execute(db.sql("UPDATE messages SET status = ?, reason = '', updated_at = ? WHERE id = ?"),
                            (status, now, r.message_id))
                dest_clause = " AND destination = ?" if r.destination else ""
                params = (now, r.message_id, r.destination) if r.destination else (now, r.message_id)
                cur.execute(db.sql("UPDATE outputs SET status = 'pending', updated_at = ? WHERE message_id = ?"
                                   + dest_clause), params)
            db.write_events(cur, [(r.message_id, "replay", "started", {"mode": r.mode, "destination": r.destination})
                                  for r in taken], now)
            return taken

        return list(db.commit(work))

    def progress(self, message_ids: list[str], since: datetime) -> dict[str, int]:
        """Status counts of replayed messages the engine has taken since `since` (others are not counted)."""
        at = self.db.dialect.ts(since)
        counts: dict[str, int] = {}
        for n in range(0, len(message_ids), 500):
            chunk = message_ids[n:n + 500]
            marks = ",".join("?" * len(chunk))
            for status, count in self.db.query(
                    f"SELECT m.status, COUNT(*) FROM messages m WHERE m.id IN ({marks}) AND m.updated_at >= ?"
                    " AND NOT EXISTS (SELECT 1 FROM replays r WHERE r.message_id = m.id) GROUP BY m.status",
                    (*chunk, at)):
                counts[str(status)] = counts.get(str(status), 0) + int(count)
        return counts

    def pending(self) -> int:
        """Requests not yet taken."""
        return int(self.db.query("SELECT COUNT(*) FROM replays")[0][0])

    def cancel(self, message_ids: list[str] | None = None) -> int:
        """Withdraw replay requests not yet taken (all of them, or those of these messages)."""
        def work(cur: Any) -> int:
            if message_ids is None:
                cur.execute("DELETE FROM replays")
                return int(cur.rowcount)
            cur.executemany(self.db.sql("DELETE FROM replays WHERE message_id = ?"), [(m,) for m in message_ids])
            return len(message_ids)

        return int(self.db.commit(work))

    def select_ids(self, *, channel: str | None = None, status: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, destination: str | None = None,
                   batch: int = 1000) -> Iterator[str]:
        """Message ids matching a filter, oldest first, by indexed metadata (for bulk replay)."""
        dialect = self.db.dialect
        where: list[str] = []
        params: list[Any] = []
        join = ""
        if destination:
            join = " JOIN outputs o ON o.message_id = m.id AND o.destination = ?"
            params.append(destination)
        for clause, val in (("m.channel = ?", channel), ("m.status = ?", status),
                            ("m.received_at >= ?", dialect.ts(since) if since else None),
                            ("m.received_at < ?", dialect.ts(until) if until else None)):
            if val:
                where.append(clause)
                params.append(val)
        last = ""
        while True:
            cond = " AND ".join([*where, "m.id > ?"])
            rows = self.db.query(f"SELECT m.id FROM messages m{join} WHERE {cond} ORDER BY m.id LIMIT {int(batch)}",
                                 (*params, last))
            if not rows:
                return
            yield from (str(r[0]) for r in rows)
            last = str(rows[-1][0])
