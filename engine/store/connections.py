"""Inbound connections: who connected to a listening channel, when, and how it ended."""

from __future__ import annotations

from typing import Any

from engine.store.database import Database

__all__ = ["Connections"]

_KEYS = ("id", "channel", "peer", "client", "opened_at", "closed_at", "messages", "outcome")


class Connections:
    """The `connections` table: owns the record of inbound connections. Its writes are lazy (they
    ride along with the next commit someone waits for): a connection is never worth an fsync."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def opened(self, conn_id: str, channel: str, peer: str, client: str = "", outcome: str = "open") -> None:
        """Record a connection opened (or, with another `outcome`, refused at once)."""
        at = self.db.now()
        closed = at if outcome != "open" else None
        sql = self.db.sql("INSERT INTO connections (id, channel, peer, client, opened_at, closed_at, outcome)"
                          " VALUES (?,?,?,?,?,?,?)")
        self.db.lazy(lambda cur: cur.execute(sql, (conn_id, channel, peer, client, at, closed, outcome)))

    def closed(self, conn_id: str, messages: int, outcome: str = "closed") -> None:
        """Record a connection's end and how many messages it brought."""
        at = self.db.now()
        sql = self.db.sql("UPDATE connections SET closed_at = ?, messages = ?, outcome = ? WHERE id = ?")
        self.db.lazy(lambda cur: cur.execute(sql, (at, messages, outcome, conn_id)))

    def recent(self, channel: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest inbound connections, newest first."""
        clause, params = ("WHERE channel = ?", (channel,)) if channel else ("", ())
        rows = self.db.query("SELECT id, channel, peer, client, opened_at, closed_at, messages, outcome"
                             f" FROM connections {clause} ORDER BY id DESC LIMIT {int(limit)}", params)
        out = []
        for r in rows:
            item = dict(zip(_KEYS, r, strict=True))
            for k in ("opened_at", "closed_at"):
                if item[k] is not None:
                    item[k] = self.db.dialect.from_ts(item[k]).isoformat()
            out.append(item)
        return out
