"""Outputs: the FHIR a message was transformed into, per destination, and how its delivery went."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.ids import id_floor
from engine.store.database import Database, many
from engine.types import Status

__all__ = ["OutputRow", "Outputs"]


@dataclass(frozen=True, slots=True)
class OutputRow:
    """One message's output to one destination (its body empty when read without it)."""

    message_id: str
    destination: str
    status: str
    attempts: int
    location: str
    body: bytes


class Outputs:
    """The `outputs` table (bodies through the dialect): owns recording a message's outputs when it
    is transformed, the intent to write them and their delivery, and the reads of them. Guarantees
    that a delivered output's body is never overwritten and that a message becomes delivered only
    when every one of its outputs is."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writes -----------------------------------------------------------------------------
    def transformed(self, message_id: str, outputs: dict[str, bytes], detail: dict[str, Any] | None = None, *,
                    wait: bool = True) -> None:
        """Record the FHIR output for each destination (pending) and mark the message transformed.

        `wait=False` only where every stage shares this journal's one writer (the embedded
        broker): writes then commit in submission order, and a crash before the commit only
        means the message is transformed again at recovery.
        """
        self.transformed_many([(message_id, outputs, detail)], wait=wait)

    def transformed_many(self, items: list[tuple[str, dict[str, bytes], dict[str, Any] | None]], *,
                         wait: bool = True) -> None:
        """`transformed` for a batch of messages, in one transaction.

        A message passed on unconverted (its detail's `passed`: why no mapping took it) is recorded the
        same way, its transform event `passed` and that reason kept on the message.
        """
        db = self.db
        now = db.now()
        upsert = db.sql("INSERT INTO outputs (message_id, destination, status, updated_at, body)"
                        " VALUES (?,?,?,?,?) ON CONFLICT (message_id, destination) DO UPDATE SET"
                        " body = excluded.body, updated_at = excluded.updated_at"
                        " WHERE outputs.status <> 'delivered'")
        mark = db.sql("UPDATE messages SET status = ?, stage = 'transform', reason = ?, updated_at = ?"
                      " WHERE id = ? AND status IN ('received', 'transformed', 'failed')")
        rows, bodies = db.dialect.output_bodies([(mid, dest, "pending", now, db.sealer.seal(body, f"{mid}/{dest}"))
                                                 for mid, outputs, _ in items for dest, body in outputs.items()])
        mark_filtered = db.sql("UPDATE messages SET status = ?, stage = 'route', reason = ?, updated_at = ?"
                               " WHERE id = ? AND status IN ('received', 'transformed', 'failed')")
        sent = [(mid, detail) for mid, outputs, detail in items if outputs]
        kept = [(mid, detail or {}) for mid, outputs, detail in items if not outputs]

        def work(cur: Any) -> None:
            if rows:
                many(cur, upsert, rows)
            db.dialect.write_output_bodies(cur, bodies)
            many(cur, mark, [(Status.TRANSFORMED, str((d or {}).get("passed", ""))[:2000], now, mid)
                             for mid, d in sent])
            db.write_events(cur, [(mid, "transform", Status.PASSED if "passed" in (d or {}) else Status.TRANSFORMED, d)
                                  for mid, d in sent], now)
            if kept:  # no destination takes them: final, with each destination's reason
                why = [str(d.get("filtered", "no destination")) for _, d in kept]
                many(cur, mark_filtered, [(Status.FILTERED, w[:2000], now, mid)
                                          for (mid, _), w in zip(kept, why, strict=True)])
                db.write_events(cur, [(mid, "route", Status.FILTERED, d) for mid, d in kept], now)

        fut = db.submit(work, lazy=not wait)
        if wait:
            fut.result(60)

    def output_writing(self, message_id: str, destination: str, location: str) -> None:
        """Record the intent to write at `location` before writing: recovery checks it there."""
        self.outputs_writing(destination, [(message_id, location)])

    def outputs_writing(self, destination: str, items: list[tuple[str, str]]) -> None:
        """`output_writing` for a batch, in one commit: (message id, location) pairs."""
        now = self.db.now()
        sql = self.db.sql("UPDATE outputs SET status = 'writing', location = ?, attempts = attempts + 1,"
                          " updated_at = ? WHERE message_id = ? AND destination = ?")
        self.db.commit(lambda cur: many(cur, sql, [(loc, now, mid, destination) for mid, loc in items]))

    def delivered(self, message_id: str, destination: str, location: str, response: str = "", *,
                  wait: bool = True) -> bool:
        """Mark one output delivered; the message becomes delivered when all its outputs are. Returns that.

        `wait=False` (embedded broker only, as for `transformed`) returns False at once; the
        destination's durable intent record makes a redelivery after a crash harmless.
        """
        return bool(self.delivered_many(destination, [(message_id, location, response)], wait=wait))

    def delivered_many(self, destination: str, items: list[tuple[str, str, str]], *, wait: bool = True) -> int:
        """`delivered` for a batch of (message id, location, response), in one transaction.

        Returns how many messages became delivered (0 at once with `wait=False`).
        """
        db = self.db
        now = db.now()
        out = db.sql("UPDATE outputs SET status = 'delivered', location = ?, response = ?, updated_at = ?"
                     " WHERE message_id = ? AND destination = ?")
        msg = db.sql("UPDATE messages SET status = 'delivered', stage = 'deliver', updated_at = ? WHERE id = ?"
                     " AND status <> 'delivered' AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.message_id = ?"
                     " AND o.status <> 'delivered')")

        def work(cur: Any) -> int:
            many(cur, out, [(loc, resp, now, mid, destination) for mid, loc, resp in items])
            db.write_events(cur, [(mid, "deliver", Status.DELIVERED, {"destination": destination, "location": loc})
                                  for mid, loc, _ in items], now)
            done = 0
            for mid, _, _ in items:
                cur.execute(msg, (now, mid, mid))
                done += max(cur.rowcount, 0)
            return done

        fut = db.submit(work, lazy=not wait)
        return int(fut.result(60)) if wait else 0

    # -- reads ------------------------------------------------------------------------------
    def get(self, message_id: str, destination: str, limit: int | None = None) -> OutputRow | None:
        """One destination's output; with `limit`, only the first `limit` bytes of its body."""
        body = self.db.dialect.body_of("outputs.message_id", "outputs.destination", "body")
        rows = self.db.query(f"SELECT message_id, destination, status, attempts, location, {body} FROM outputs"
                             " WHERE message_id = ? AND destination = ?", (message_id, destination))
        if not rows:
            return None
        r = rows[0]
        data = self.db.sealer.open(self.db.dialect.blob(r[5]), f"{r[0]}/{r[1]}", limit) if r[5] is not None else b""
        return OutputRow(r[0], r[1], r[2], int(r[3]), r[4], data)

    def many(self, message_ids: list[str], destination: str) -> dict[str, OutputRow]:
        """`get` for many messages in one query (without bodies): id → row, for those that have one."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self.db.query("SELECT message_id, destination, status, attempts, location FROM outputs"
                             f" WHERE destination = ? AND message_id IN ({marks})", (destination, *message_ids))
        return {r[0]: OutputRow(r[0], r[1], r[2], int(r[3]), r[4], b"") for r in rows}

    def earlier_fhir(self, patient_key: str, received_at: datetime, message_id: str, limit: int = 10) -> list[bytes]:
        """The FHIR this engine made from the patient's messages received before this one, newest first
        (one body per message): what it last wrote of a resource a message leaves unstated."""
        if not patient_key:
            return []
        dialect = self.db.dialect
        body = dialect.body_of("o.message_id", "o.destination", "o.body")
        rows = self.db.query(
            f"SELECT m.id, o.destination, {body} FROM messages m JOIN outputs o ON o.message_id = m.id"
            " WHERE m.patient_key = ? AND m.received_at <= ? AND m.id <> ?"
            " ORDER BY m.received_at DESC, m.id DESC LIMIT ?",
            (patient_key, dialect.ts(received_at), message_id, limit * 4))
        found: list[bytes] = []
        seen: set[str] = set()
        for mid, dest, blob in rows:
            if mid in seen or blob is None or len(found) >= limit:
                continue
            seen.add(mid)
            found.append(self.db.sealer.open(dialect.blob(blob), f"{mid}/{dest}"))
        return found

    def destinations(self, message_id: str) -> list[str]:
        """The destinations the message has an output for."""
        return [str(r[0]) for r in self.db.query("SELECT destination FROM outputs WHERE message_id = ?"
                                                 " ORDER BY destination", (message_id,))]

    def response(self, message_id: str, destination: str) -> str:
        """The destination's last answer about this output ('' when none)."""
        rows = self.db.query("SELECT response FROM outputs WHERE message_id = ? AND destination = ?",
                             (message_id, destination))
        return str(rows[0][0]) if rows else ""

    def delivered_since(self, destinations: list[str], since_epoch: float) -> dict[str, int]:
        """destination → outputs delivered there of the messages received since then, from the journal,
        so every process (the console's among them) counts what all the deliver processes did.

        Message ids are UUIDv7: the time range is a range of ids in the (status, destination,
        message_id) index, read without touching the table."""
        floor = id_floor(int(since_epoch * 1000))
        sql = "SELECT COUNT(*) FROM outputs WHERE status = 'delivered' AND destination = ? AND message_id >= ?"
        return {d: int(self.db.query(sql, (d, floor))[0][0]) for d in destinations}

    def counts(self) -> dict[str, dict[str, int]]:
        """destination → outputs waiting for something: retrying, waiting (behind a patient's failed
        message), dead (through the (status, destination) index: never the delivered millions)."""
        out: dict[str, dict[str, int]] = {}
        for status in ("retrying", "waiting", "dead"):
            for dest, n in self.db.query("SELECT destination, COUNT(*) FROM outputs WHERE status = ?"
                                         " GROUP BY destination", (status,)):
                out.setdefault(str(dest), {})[status] = int(n)
        return out

    def dead_letters(self, destination: str, limit: int = 100_000) -> list[str]:
        """The messages whose output to `destination` is dead, oldest first."""
        return [str(r[0]) for r in self.db.query(
            "SELECT message_id FROM outputs WHERE status = 'dead' AND destination = ?"
            f" ORDER BY message_id LIMIT {int(limit)}", (destination,))]
