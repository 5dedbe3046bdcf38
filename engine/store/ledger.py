"""The journal's delivery ledger: retries, per-patient lanes, dead letters and replay requests.

Kept apart from the intake and transform writes of `journal.py`; `Journal` inherits it. Every
state lives in the journal (not in a worker's memory), so a shard taken over by another process
after a crash finds its patients' lanes, and an operator's replay reaches whichever process runs
the stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.ids import id_floor
from engine.store import partitions
from engine.types import Status

__all__ = ["DeliveryLedger", "Replay"]


@dataclass(frozen=True, slots=True)
class Replay:
    id: int
    message_id: str
    mode: str            # transform | deliver
    destination: str     # deliver: the destination ('' = every output of the message)
    requested_by: str


class DeliveryLedger:
    """Mixed into Journal: uses its writer (`_writer`), reads (`_query`), dialect and clock."""

    _writer: Any
    dialect: Any
    sealer: Any
    clock: Callable[[], datetime]
    _sql: Callable[[str], str]
    _query: Callable[..., list[tuple[Any, ...]]]
    _events: Callable[..., None]

    def _now(self) -> Any:
        return self.dialect.ts(self.clock())

    # -- retries and lanes --------------------------------------------------------------------
    def retrying(self, destination: str, items: list[tuple[str, str, int, float, str]]) -> None:
        """(message id, patient key, round, delay s, reason): each waits in a retry round, and heads
        its patient's lane so their later messages wait behind it."""
        now = self._now()
        out = self._sql("UPDATE outputs SET status = 'retrying', response = ?, updated_at = ?"
                        " WHERE message_id = ? AND destination = ?")
        lane = self._sql("INSERT INTO lanes (destination, patient_key, message_id, since) VALUES (?,?,?,?)"
                         " ON CONFLICT (destination, patient_key) DO UPDATE SET message_id = excluded.message_id")

        def work(cur: Any) -> None:
            cur.executemany(out, [(reason[:2000], now, mid, destination) for mid, _, _, _, reason in items])
            rows = [(destination, pk, mid, now) for mid, pk, _, _, _ in items if pk]
            if rows:
                cur.executemany(lane, rows)
            self._events(cur, [(mid, "deliver", "retrying", {"destination": destination, "round": level + 1,
                                                             "retry_in_s": delay, "reason": reason[:500]})
                               for mid, _, level, delay, reason in items], now)

        self._writer.run(work)

    def lanes(self, destination: str, patient_keys: list[str]) -> dict[str, str]:
        """patient key → the message its lane waits for, for those of `patient_keys` that are blocked."""
        keys = sorted({k for k in patient_keys if k})
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        return {str(pk): str(mid) for pk, mid in self._query(
            f"SELECT patient_key, message_id FROM lanes WHERE destination = ? AND patient_key IN ({marks})",
            (destination, *keys))}

    def status_counts(self, since_epoch: float) -> dict[str, dict[str, int]]:
        """channel → status → messages received since then (the time index bounds the scan)."""
        from datetime import UTC

        since = self.dialect.ts(datetime.fromtimestamp(since_epoch, UTC))
        out: dict[str, dict[str, int]] = {}
        for ch, status, n in self._query("SELECT channel, status, COUNT(*) FROM messages WHERE received_at >= ?"
                                         " GROUP BY channel, status", (since,)):
            out.setdefault(str(ch), {})[str(status)] = int(n)
        return out

    def received_since(self, since_epoch: float) -> dict[str, int]:
        from datetime import UTC

        since = self.dialect.ts(datetime.fromtimestamp(since_epoch, UTC))
        return {str(ch): int(n) for ch, n in self._query(
            "SELECT channel, COUNT(*) FROM messages WHERE received_at >= ? GROUP BY channel", (since,))}

    def delivered_since(self, destinations: list[str], since_epoch: float) -> dict[str, int]:
        """destination → outputs delivered there of the messages received since then, from the journal,
        so every process (the console's among them) counts what all the deliver processes did.

        Message ids are UUIDv7: the time range is a range of ids in the (status, destination,
        message_id) index, read without touching the table."""
        floor = id_floor(int(since_epoch * 1000))
        sql = "SELECT COUNT(*) FROM outputs WHERE status = 'delivered' AND destination = ? AND message_id >= ?"
        return {d: int(self._query(sql, (d, floor))[0][0]) for d in destinations}

    def output_counts(self) -> dict[str, dict[str, int]]:
        """destination → outputs waiting for something: retrying, waiting (behind a patient's failed
        message), dead (through the (status, destination) index: never the delivered millions)."""
        out: dict[str, dict[str, int]] = {}
        for status in ("retrying", "waiting", "dead"):
            for dest, n in self._query("SELECT destination, COUNT(*) FROM outputs WHERE status = ?"
                                       " GROUP BY destination", (status,)):
                out.setdefault(str(dest), {})[status] = int(n)
        return out

    def lanes_by_destination(self) -> dict[str, int]:
        return {str(d): int(n) for d, n in self._query("SELECT destination, COUNT(*) FROM lanes GROUP BY destination")}

    def ping(self) -> None:
        """Raise if the journal does not answer (readiness)."""
        self._query("SELECT 1")

    def blocked_lanes(self, destination: str | None = None) -> int:
        if destination:
            return int(self._query("SELECT COUNT(*) FROM lanes WHERE destination = ?", (destination,))[0][0])
        return int(self._query("SELECT COUNT(*) FROM lanes")[0][0])

    def wait_behind(self, destination: str, items: list[tuple[str, str]]) -> None:
        """(message id, head id): these wait in their patient's lane; the head's delivery sends them."""
        now = self._now()
        sql = self._sql("UPDATE outputs SET status = 'waiting', updated_at = ? WHERE message_id = ? AND destination = ?"
                        " AND status <> 'delivered'")

        def work(cur: Any) -> None:
            cur.executemany(sql, [(now, mid, destination) for mid, _ in items])
            self._events(cur, [(mid, "deliver", "waiting", {"destination": destination, "behind": head})
                               for mid, head in items], now)

        self._writer.run(work)

    def waiting(self, destination: str, patient_key: str, limit: int = 500) -> list[tuple[str, dict[str, Any], bytes]]:
        """The messages waiting in a lane, oldest first: (id, pipeline headers, output body)."""
        body = partitions.body_of("o.message_id", "o.destination") if self.dialect.name == "postgresql" else "o.body"
        rows = self._query(
            f"SELECT m.id, m.channel, m.message_type, m.received_at, {body} FROM outputs o JOIN messages m"
            " ON m.id = o.message_id WHERE o.destination = ? AND o.status = 'waiting' AND m.patient_key = ?"
            f" ORDER BY m.id LIMIT {int(limit)}", (destination, patient_key))
        return [(str(mid), {"message_id": str(mid), "channel": ch, "message_type": mtype, "patient_key": patient_key,
                            "received_at": self.dialect.from_ts(at).isoformat(), "destinations": destination},
                 self.sealer.open(self.dialect.blob(body), f"{mid}/{destination}"))
                for mid, ch, mtype, at, body in rows]

    def release_lane(self, destination: str, patient_key: str, head: str) -> None:
        """Open a lane whose waiting messages are all sent (only if `head` still heads it)."""
        sql = self._sql("DELETE FROM lanes WHERE destination = ? AND patient_key = ? AND message_id = ?")
        self._writer.run(lambda cur: cur.execute(sql, (destination, patient_key, head)))

    def move_lane(self, destination: str, patient_key: str, head: str) -> None:
        sql = self._sql("INSERT INTO lanes (destination, patient_key, message_id, since) VALUES (?,?,?,?)"
                        " ON CONFLICT (destination, patient_key) DO UPDATE SET message_id = excluded.message_id")
        now = self._now()
        self._writer.run(lambda cur: cur.execute(sql, (destination, patient_key, head, now)))

    # -- dead letters ---------------------------------------------------------------------------
    def dead(self, destination: str, message_id: str, patient_key: str, reason: str, response: str,
             *, hold_lane: bool) -> None:
        """A message that will not be delivered without a human: failed, its output dead with the
        server's answer (OperationOutcome) kept; with `hold_lane` its patient's later messages wait."""
        now = self._now()

        def work(cur: Any) -> None:
            cur.execute(self._sql("UPDATE outputs SET status = 'dead', response = ?, updated_at = ?"
                                  " WHERE message_id = ? AND destination = ?"),
                        (response[:20000], now, message_id, destination))
            cur.execute(self._sql("UPDATE messages SET status = ?, stage = 'deliver', reason = ?, updated_at = ?"
                                  " WHERE id = ?"), (Status.FAILED, reason[:2000], now, message_id))
            if patient_key and hold_lane:
                cur.execute(self._sql(
                    "INSERT INTO lanes (destination, patient_key, message_id, since) VALUES (?,?,?,?)"
                    " ON CONFLICT (destination, patient_key) DO UPDATE SET message_id = excluded.message_id"),
                    (destination, patient_key, message_id, now))
            elif patient_key:
                cur.execute(self._sql("DELETE FROM lanes WHERE destination = ? AND patient_key = ? AND message_id = ?"),
                            (destination, patient_key, message_id))
            self._events(cur, [(message_id, "deliver", "dead_letter",
                                {"destination": destination, "reason": reason[:2000]})], now)

        self._writer.run(work)

    def dead_letters(self, destination: str, limit: int = 100_000) -> list[str]:
        return [str(r[0]) for r in self._query(
            "SELECT message_id FROM outputs WHERE status = 'dead' AND destination = ?"
            f" ORDER BY message_id LIMIT {int(limit)}", (destination,))]

    def output_destinations(self, message_id: str) -> list[str]:
        return [str(r[0]) for r in self._query("SELECT destination FROM outputs WHERE message_id = ?"
                                               " ORDER BY destination", (message_id,))]

    def output_response(self, message_id: str, destination: str) -> str:
        rows = self._query("SELECT response FROM outputs WHERE message_id = ? AND destination = ?",
                           (message_id, destination))
        return str(rows[0][0]) if rows else ""

    # -- replays ----------------------------------------------------------------------------------
    def request_replays(self, message_ids: list[str], mode: str, destination: str = "", by: str = "") -> int:
        """Ask the running engine to replay these messages; returns how many were queued."""
        now = self._now()
        ins = self._sql("INSERT INTO replays (message_id, mode, destination, requested_at, requested_by)"
                        " VALUES (?,?,?,?,?)")

        def work(cur: Any) -> int:
            cur.executemany(ins, [(mid, mode, destination, now, by) for mid in message_ids])
            self._events(cur, [(mid, "replay", "requested", {"mode": mode, "destination": destination, "by": by})
                               for mid in message_ids], now)
            return len(message_ids)

        return int(self._writer.run(work))

    def take_replays(self, modes: tuple[str, ...], limit: int = 200) -> list[Replay]:
        """Claim up to `limit` replay requests for these stages (each is taken by one process only)."""
        marks = ",".join("?" * len(modes))
        lock = " FOR UPDATE SKIP LOCKED" if self.dialect.name == "postgresql" else ""
        select = self._sql(f"SELECT id, message_id, mode, destination, requested_by FROM replays"
                           f" WHERE mode IN ({marks}) ORDER BY id LIMIT {int(limit)}{lock}")
        delete = self._sql("DELETE FROM replays WHERE id = ?")
        now = self._now()

        def work(cur: Any) -> list[Replay]:
            cur.execute(select, modes)
            taken = [Replay(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in cur.fetchall()]
            if not taken:
                return []
            cur.executemany(delete, [(r.id,) for r in taken])
            for r in taken:  # the message is in flight again: not final until it is delivered or fails anew
                status = Status.RECEIVED if r.mode == "transform" else Status.TRANSFORMED
                cur.execute(self._sql("UPDATE messages SET status = ?, reason = '', updated_at = ? WHERE id = ?"),
                            (status, now, r.message_id))
                dest_clause = " AND destination = ?" if r.destination else ""
                params = (now, r.message_id, r.destination) if r.destination else (now, r.message_id)
                cur.execute(self._sql("UPDATE outputs SET status = 'pending', updated_at = ? WHERE message_id = ?"
                                      + dest_clause), params)
            self._events(cur, [(r.message_id, "replay", "started", {"mode": r.mode, "destination": r.destination})
                               for r in taken], now)
            return taken

        return list(self._writer.run(work))

    def replay_progress(self, message_ids: list[str], since: datetime) -> dict[str, int]:
        """Status counts of replayed messages the engine has taken since `since` (others are not counted)."""
        at = self.dialect.ts(since)
        counts: dict[str, int] = {}
        for n in range(0, len(message_ids), 500):
            chunk = message_ids[n:n + 500]
            marks = ",".join("?" * len(chunk))
            for status, count in self._query(
                    f"SELECT m.status, COUNT(*) FROM messages m WHERE m.id IN ({marks}) AND m.updated_at >= ?"
                    " AND NOT EXISTS (SELECT 1 FROM replays r WHERE r.message_id = m.id) GROUP BY m.status",
                    (*chunk, at)):
                counts[str(status)] = counts.get(str(status), 0) + int(count)
        return counts

    def pending_replays(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM replays")[0][0])

    def cancel_replays(self, message_ids: list[str] | None = None) -> int:
        """Withdraw replay requests not yet taken (all of them, or those of these messages)."""
        def work(cur: Any) -> int:
            if message_ids is None:
                cur.execute("DELETE FROM replays")
                return int(cur.rowcount)
            cur.executemany(self._sql("DELETE FROM replays WHERE message_id = ?"), [(m,) for m in message_ids])
            return len(message_ids)

        return int(self._writer.run(work))

    def select_ids(self, *, channel: str | None = None, status: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, destination: str | None = None,
                   batch: int = 1000) -> Iterator[str]:
        """Message ids matching a filter, oldest first, by indexed metadata (for bulk replay)."""
        where, params = [], []
        join = ""
        if destination:
            join = " JOIN outputs o ON o.message_id = m.id AND o.destination = ?"
            params.append(destination)
        for clause, val in (("m.channel = ?", channel), ("m.status = ?", status),
                            ("m.received_at >= ?", self.dialect.ts(since) if since else None),
                            ("m.received_at < ?", self.dialect.ts(until) if until else None)):
            if val:
                where.append(clause)
                params.append(val)
        last = ""
        while True:
            cond = " AND ".join([*where, "m.id > ?"])
            rows = self._query(f"SELECT m.id FROM messages m{join} WHERE {cond} ORDER BY m.id LIMIT {int(batch)}",
                               (*params, last))
            if not rows:
                return
            yield from (str(r[0]) for r in rows)
            last = str(rows[-1][0])
