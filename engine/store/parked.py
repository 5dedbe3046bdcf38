"""Parked messages: held until every local code they carry has a mapping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine.store.database import Database, many
from engine.store.messages import MessageRow, Messages
from engine.types import Status

__all__ = ["Parked"]


class Parked:
    """The `parked` table: owns holding a message on unmapped codes and releasing it once they are
    mapped. Guarantees that a released message is re-run by the one caller that released it."""

    def __init__(self, db: Database, messages: Messages) -> None:
        self.db = db
        self._messages = messages

    def park(self, message_id: str, sender: str, codes: list[tuple[str, str]], reason: str,
             detail: dict[str, Any] | None = None) -> None:
        """Hold a message until each (code map, local code) of `codes` has a mapping."""
        db = self.db
        now = db.now()

        def work(cur: Any) -> None:
            cur.execute(db.sql("UPDATE messages SET status = ?, stage = 'transform', reason = ?, updated_at = ?"
                               " WHERE id = ?"), (Status.PARKED, reason[:2000], now, message_id))
            many(cur, db.sql("INSERT INTO parked (message_id, code_map, local_code, sender, parked_at)"
                             " VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING"),
                 [(message_id, m, c, sender, now) for m, c in codes])
            db.write_events(cur, [(message_id, "transform", Status.PARKED,
                                   {"reason": reason[:2000], **(detail or {})})], db.now())

        db.commit(work)

    def codes(self) -> list[tuple[str, str, str, int, datetime, datetime]]:
        """(code map, local code, sender, messages, first parked, last parked), most messages first."""
        from_ts = self.db.dialect.from_ts
        rows = self.db.query("SELECT code_map, local_code, sender, COUNT(*), MIN(parked_at), MAX(parked_at)"
                             " FROM parked GROUP BY code_map, local_code, sender ORDER BY COUNT(*) DESC, code_map,"
                             " local_code")
        return [(m, c, s, int(n), from_ts(a), from_ts(b)) for m, c, s, n, a, b in rows]

    def release(self, code_map: str, is_mapped: Callable[[str], bool]) -> list[MessageRow]:
        """Un-park the messages of `code_map` whose every parked code `is_mapped` now; they go back to
        `received` for a new transform. Returns them (only to the caller that released them)."""
        db = self.db
        rows = db.query("SELECT message_id, local_code FROM parked WHERE code_map = ?", (code_map,))
        waiting: dict[str, list[str]] = {}
        for mid, code in rows:
            waiting.setdefault(mid, []).append(code)
        ready = [mid for mid, codes in waiting.items() if all(is_mapped(c) for c in codes)]
        if not ready:
            return []
        now = db.now()

        def work(cur: Any) -> list[str]:
            mine = []
            for mid in ready:
                cur.execute(db.sql("DELETE FROM parked WHERE message_id = ? AND code_map = ?"), (mid, code_map))
                if cur.rowcount:  # another worker may have released it first: only one re-runs it
                    mine.append(mid)
            left = db.sql("SELECT 1 FROM parked WHERE message_id = ?")
            for mid in list(mine):
                cur.execute(left, (mid,))
                if cur.fetchone():  # still waiting on another map's code
                    mine.remove(mid)
            many(cur, db.sql("UPDATE messages SET status = ?, reason = '', updated_at = ? WHERE id = ?"
                             " AND status = ?"), [(Status.RECEIVED, now, mid, Status.PARKED) for mid in mine])
            db.write_events(cur, [(mid, "nomenclature", "released", {"code_map": code_map}) for mid in mine], now)
            return mine

        released = db.commit(work)
        return [row for row in (self._messages.get(mid) for mid in released) if row is not None]
