"""The delivery ledger: retries, per-patient lanes and dead letters.

Every state lives in the journal (not in a worker's memory), so a shard taken over by another
process after a crash finds its patients' lanes.
"""

from __future__ import annotations

from typing import Any

from engine.store.database import Database
from engine.types import Status

__all__ = ["Delivery"]

_HOLD_LANE = ("INSERT INTO lanes (destination, patient_key, message_id, since) VALUES (?,?,?,?)"
              " ON CONFLICT (destination, patient_key) DO UPDATE SET message_id = excluded.message_id")


class Delivery:
    """The `lanes` table and the outputs' retry and dead-letter states: owns what happens to an
    output its destination did not take. Guarantees that a patient's later messages wait behind
    the one heading their lane, until that one is delivered or its lane released."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- retries and lanes --------------------------------------------------------------------
    def retrying(self, destination: str, items: list[tuple[str, str, int, float, str]]) -> None:
        """(message id, patient key, round, delay s, reason): each waits in a retry round, and heads
        its patient's lane so their later messages wait behind it."""
        db = self.db
        now = db.now()
        out = db.sql("UPDATE outputs SET status = 'retrying', response = ?, updated_at = ?"
                     " WHERE message_id = ? AND destination = ?")
        lane = db.sql(_HOLD_LANE)

        def work(cur: Any) -> None:
            cur.executemany(out, [(reason[:2000], now, mid, destination) for mid, _, _, _, reason in items])
            rows = [(destination, pk, mid, now) for mid, pk, _, _, _ in items if pk]
            if rows:
                cur.executemany(lane, rows)
            db.write_events(cur, [(mid, "deliver", "retrying", {"destination": destination, "round": level + 1,
                                                                "retry_in_s": delay, "reason": reason[:500]})
                                  for mid, _, level, delay, reason in items], now)

        db.commit(work)

    def lanes(self, destination: str, patient_keys: list[str]) -> dict[str, str]:
        """patient key → the message its lane waits for, for those of `patient_keys` that are blocked."""
        keys = sorted({k for k in patient_keys if k})
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        return {str(pk): str(mid) for pk, mid in self.db.query(
            f"SELECT patient_key, message_id FROM lanes WHERE destination = ? AND patient_key IN ({marks})",
            (destination, *keys))}

    def lanes_by_destination(self) -> dict[str, int]:
        """destination → blocked lanes."""
        return {str(d): int(n) for d, n in self.db.query(
            "SELECT destination, COUNT(*) FROM lanes GROUP BY destination")}

    def blocked_lanes(self, destination: str | None = None) -> int:
        if destination:
            return int(self.db.query("SELECT COUNT(*) FROM lanes WHERE destination = ?", (destination,))[0][0])
        return int(self.db.query("SELECT COUNT(*) FROM lanes")[0][0])

    def wait_behind(self, destination: str, items: list[tuple[str, str]]) -> None:
        """(message id, head id): these wait in their patient's lane; the head's delivery sends them."""
        db = self.db
        now = db.now()
        sql = db.sql("UPDATE outputs SET status = 'waiting', updated_at = ? WHERE message_id = ? AND destination = ?"
                     " AND status <> 'delivered'")

        def work(cur: Any) -> None:
            cur.executemany(sql, [(now, mid, destination) for mid, _ in items])
            db.write_events(cur, [(mid, "deliver", "waiting", {"destination": destination, "behind": head})
                                  for mid, head in items], now)

        db.commit(work)

    def waiting(self, destination: str, patient_key: str, limit: int = 500) -> list[tuple[str, dict[str, Any], bytes]]:
        """The messages waiting in a lane, oldest first: (id, pipeline headers, output body)."""
        dialect = self.db.dialect
        body = dialect.body_of("o.message_id", "o.destination", "o.body")
        rows = self.db.query(
            f"SELECT m.id, m.channel, m.message_type, m.received_at, {body} FROM outputs o JOIN messages m"
            " ON m.id = o.message_id WHERE o.destination = ? AND o.status = 'waiting' AND m.patient_key = ?"
            f" ORDER BY m.id LIMIT {int(limit)}", (destination, patient_key))
        return [(str(mid), {"message_id": str(mid), "channel": ch, "message_type": mtype, "patient_key": patient_key,
                            "received_at": dialect.from_ts(at).isoformat(), "destinations": destination},
                 self.db.sealer.open(dialect.blob(body), f"{mid}/{destination}"))
                for mid, ch, mtype, at, body in rows]

    def release_lane(self, destination: str, patient_key: str, head: str) -> None:
        """Open a lane whose waiting messages are all sent (only if `head` still heads it)."""
        sql = self.db.sql("DELETE FROM lanes WHERE destination = ? AND patient_key = ? AND message_id = ?")
        self.db.commit(lambda cur: cur.execute(sql, (destination, patient_key, head)))

    def move_lane(self, destination: str, patient_key: str, head: str) -> None:
        """Make `head` the message the patient's lane waits for."""
        sql = self.db.sql(_HOLD_LANE)
        now = self.db.now()
        self.db.commit(lambda cur: cur.execute(sql, (destination, patient_key, head, now)))

    # -- dead letters ---------------------------------------------------------------------------
    def dead(self, destination: str, message_id: str, patient_key: str, reason: str, response: str,
             *, hold_lane: bool) -> None:
        """A message that will not be delivered without a human: failed, its output dead with the
        server's answer (OperationOutcome) kept; with `hold_lane` its patient's later messages wait."""
        db = self.db
        now = db.now()

        def work(cur: Any) -> None:
            cur.execute(db.sql("UPDATE outputs SET status = 'dead', response = ?, updated_at = ?"
                               " WHERE message_id = ? AND destination = ?"),
                        (response[:20000], now, message_id, destination))
            cur.execute(db.sql("UPDATE messages SET status = ?, stage = 'deliver', reason = ?, updated_at = ?"
                               " WHERE id = ?"), (Status.FAILED, reason[:2000], now, message_id))
            if patient_key and hold_lane:
                cur.execute(db.sql(_HOLD_LANE), (destination, patient_key, message_id, now))
            elif patient_key:
                cur.execute(db.sql("DELETE FROM lanes WHERE destination = ? AND patient_key = ? AND message_id = ?"),
                            (destination, patient_key, message_id))
            db.write_events(cur, [(message_id, "deliver", "dead_letter",
                                   {"destination": destination, "reason": reason[:2000]})], now)

        db.commit(work)
