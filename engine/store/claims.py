"""Claims in the journal: the aggregation state of the claims stage (engine.claims).

A claim is found by any of its business keys (a visit, an account, an FSE number) and built from
the resources the billing feeds brought (`claim_parts`, one row per resource, a later message
replacing an earlier one's version). Every change of a claim happens in one transaction that holds
the claim's row (PostgreSQL: `FOR UPDATE`; SQLite has one writer), so several worker processes
never interleave on a claim, and a message applied twice leaves the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from engine.store.database import Database, many
from engine.store.dialect import json_text

__all__ = ["STATES", "ClaimRow", "Claims", "Decision"]

#: what an operator sees of a claim (ClaimRow.state), in the order of its life
STATES = ("open", "closed", "parked", "submitted", "accepted", "rejected", "empty", "cancelled")

_COLUMNS = ("id, destination, status, version, insurer, total, items, reasons, close_reason, requested, content_sha,"
            " message_id, response_id, opened_at, updated_at, closed_at, submitted_at")


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """A claim's state as the journal holds it (no patient data: ids, codes, amounts, reasons)."""

    id: str
    destination: str
    status: str
    version: int
    insurer: str
    total: str
    items: int
    reasons: list[dict[str, str]]
    close_reason: str
    requested: str
    content_sha: str
    message_id: str
    response_id: str
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    submitted_at: datetime | None

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    @property
    def state(self) -> str:
        """The status an operator sees: `closed` for a claim closed and not yet decided (status `open`)."""
        return "closed" if self.status == "open" and self.closed_at is not None else self.status


@dataclass(frozen=True, slots=True)
class Decision:
    """What the claims stage decided for a closed claim, written in the transaction that read it.

    `status` is the claim's new status; `work`, when given, runs in the same transaction (the journal
    write of the Claim message it sends), so the claim is marked sent exactly when its message exists.
    """

    status: str
    insurer: str = ""
    total: str = ""
    items: int = 0
    reasons: list[dict[str, str]] = field(default_factory=list)
    content_sha: str | None = None      # None: unchanged
    message_id: str | None = None
    version: int | None = None
    work: Callable[[Any], Any] | None = None


class Claims:
    """The `claims`, `claim_keys` and `claim_parts` tables: owns finding a claim by its keys, adding the
    resources a message brings, closing it once, and recording what the claims stage decided and what
    operators asked. Guarantees one writer per claim at a time and idempotent application of a message.
    """

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- inside a transaction ---------------------------------------------------------------
    def _lock(self, cur: Any, claim_id: str) -> tuple[Any, ...] | None:
        """The claim's row, held until the transaction ends: PostgreSQL `FOR UPDATE`; SQLite's write lock,
        taken by a write before the read (a plain SELECT would not hold it against another process)."""
        if self.db.dialect.name == "postgresql":
            cur.execute(self.db.sql(f"SELECT {_COLUMNS} FROM claims WHERE id = ? FOR UPDATE"), (claim_id,))
        else:
            cur.execute(self.db.sql("UPDATE claims SET version = version WHERE id = ?"), (claim_id,))
            cur.execute(self.db.sql(f"SELECT {_COLUMNS} FROM claims WHERE id = ?"), (claim_id,))
        row: tuple[Any, ...] | None = cur.fetchone()
        return row

    def _row(self, r: tuple[Any, ...]) -> ClaimRow:
        from_ts = self.db.dialect.from_ts
        return ClaimRow(r[0], r[1], r[2], int(r[3]), r[4], r[5], int(r[6]), orjson.loads(r[7] or "[]"), r[8], r[9],
                        r[10], r[11], r[12], from_ts(r[13]), from_ts(r[14]),
                        from_ts(r[15]) if r[15] is not None else None, from_ts(r[16]) if r[16] is not None else None)

    def _parts(self, cur: Any, claim_id: str) -> list[dict[str, Any]]:
        cur.execute(self.db.sql("SELECT part, entry FROM claim_parts WHERE claim_id = ? ORDER BY part"), (claim_id,))
        return [orjson.loads(self.db.sealer.open(bytes(blob), f"{claim_id}/{part}")) for part, blob in cur.fetchall()]

    # -- writes -----------------------------------------------------------------------------
    def apply(self, destination: str, keys: list[str], new_id: str, parts: list[tuple[str, bytes]], *,
              message_id: str, received_at: datetime, close: str = "") -> tuple[ClaimRow, bool]:
        """Add a message's resources to the claim one of `keys` leads to (a new claim `new_id` when none
        does), link every key to it, and close it when `close` names the closing event. A resource
        already there from a later message is kept. Returns the claim and whether anything changed."""
        db = self.db
        at = db.dialect.ts(received_at)

        def work(cur: Any) -> tuple[ClaimRow, bool]:
            found: list[str] = []
            for key in keys:
                cur.execute(db.sql("SELECT claim_id FROM claim_keys WHERE destination = ? AND claim_key = ?"),
                            (destination, key))
                hit = cur.fetchone()
                if hit and hit[0] not in found:
                    found.append(hit[0])
            claim_id = found[0] if found else None
            now = db.now()
            changed = False
            for other in found[1:]:  # the message joins two claims (a BAR's account, an A01's visit): one visit
                changed |= self._merge(cur, claim_id, other)  # type: ignore[arg-type]
            if claim_id is None:
                claim_id = new_id
                cur.execute(db.sql("INSERT INTO claims (id, destination, claim_key, status, opened_at, updated_at)"
                                   " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING"),
                            (claim_id, destination, keys[0], "open", now, now))
                changed = True
            many(cur, db.sql("INSERT INTO claim_keys (claim_key, destination, claim_id) VALUES (?,?,?)"
                             " ON CONFLICT DO NOTHING"), [(k, destination, claim_id) for k in keys])
            row = self._lock(cur, claim_id)
            assert row is not None
            for part, entry in parts:
                cur.execute(db.sql("SELECT received_at, entry FROM claim_parts WHERE claim_id = ? AND part = ?"),
                            (claim_id, part))
                old = cur.fetchone()
                sealed = db.sealer.seal(entry, f"{claim_id}/{part}")
                if old is None:
                    cur.execute(db.sql("INSERT INTO claim_parts (claim_id, part, received_at, message_id, entry)"
                                       " VALUES (?,?,?,?,?)"), (claim_id, part, at, message_id, sealed))
                    changed = True
                elif db.dialect.from_ts(old[0]) <= received_at and \
                        db.sealer.open(bytes(old[1]), f"{claim_id}/{part}") != entry:
                    cur.execute(db.sql("UPDATE claim_parts SET received_at = ?, message_id = ?, entry = ?"
                                       " WHERE claim_id = ? AND part = ?"), (at, message_id, sealed, claim_id, part))
                    changed = True
            if close and row[15] is None:  # closed_at
                cur.execute(db.sql("UPDATE claims SET closed_at = ?, close_reason = ?, status = CASE WHEN status"
                                   " = 'open' THEN 'closed' ELSE status END WHERE id = ?"), (now, close, claim_id))
                changed = True
            if changed:  # a closed claim that changed needs a decision, even if this process dies before it
                cur.execute(db.sql("UPDATE claims SET updated_at = ?, requested = CASE WHEN closed_at IS NOT NULL"
                                   " AND requested = '' THEN 'settle' ELSE requested END WHERE id = ?"),
                            (now, claim_id))
            after = self._lock(cur, claim_id)
            assert after is not None
            return self._row(after), changed

        result: tuple[ClaimRow, bool] = db.commit(work)
        return result

    def _merge(self, cur: Any, into: str, other: str) -> bool:
        """Move an unsent claim's resources and keys into `into` (a later message showed both are one visit).
        A claim already sent is not merged away (the insurer has it): False, and both stay."""
        db = self.db
        r = self._lock(cur, other)
        if r is None or int(r[3]) > 0:
            return False
        cur.execute(db.sql("SELECT part, received_at, message_id, entry FROM claim_parts WHERE claim_id = ?"),
                    (other,))
        for part, received, mid, blob in cur.fetchall():
            entry = db.sealer.open(bytes(blob), f"{other}/{part}")
            cur.execute(db.sql("SELECT received_at FROM claim_parts WHERE claim_id = ? AND part = ?"), (into, part))
            old = cur.fetchone()
            sealed = db.sealer.seal(entry, f"{into}/{part}")
            if old is None:
                cur.execute(db.sql("INSERT INTO claim_parts (claim_id, part, received_at, message_id, entry)"
                                   " VALUES (?,?,?,?,?)"), (into, part, received, mid, sealed))
            elif db.dialect.from_ts(old[0]) < db.dialect.from_ts(received):
                cur.execute(db.sql("UPDATE claim_parts SET received_at = ?, message_id = ?, entry = ?"
                                   " WHERE claim_id = ? AND part = ?"), (received, mid, sealed, into, part))
        cur.execute(db.sql("DELETE FROM claim_parts WHERE claim_id = ?"), (other,))
        cur.execute(db.sql("UPDATE claim_keys SET claim_id = ? WHERE claim_id = ?"), (into, other))
        if r[15] is not None:  # the merged-away claim was closed: so is the visit
            cur.execute(db.sql("UPDATE claims SET closed_at = COALESCE(closed_at, ?), close_reason = CASE WHEN"
                               " close_reason = '' THEN ? ELSE close_reason END, status = CASE WHEN status = 'open'"
                               " THEN 'closed' ELSE status END WHERE id = ?"), (r[15], r[8], into))
        cur.execute(db.sql("DELETE FROM claims WHERE id = ?"), (other,))
        return True

    def decide(self, claim_id: str, decide: Callable[[ClaimRow, list[dict[str, Any]]], Decision | None]) -> ClaimRow:
        """Run `decide` on the claim and its resources with the claim's row held, and write its Decision
        (None: nothing to write) in the same transaction. Clears an operator's pending request."""
        db = self.db

        def work(cur: Any) -> ClaimRow:
            r = self._lock(cur, claim_id)
            if r is None:
                raise KeyError(claim_id)
            row = self._row(r)
            decision = decide(row, self._parts(cur, claim_id))
            now = db.now()
            if decision is not None:
                if decision.work is not None:
                    decision.work(cur)
                sets = ["status = ?", "insurer = ?", "total = ?", "items = ?", "reasons = ?", "requested = ''",
                        "updated_at = ?"]
                values: list[Any] = [decision.status, decision.insurer, decision.total, decision.items,
                                     json_text(decision.reasons), now]
                if decision.content_sha is not None:
                    sets += ["content_sha = ?", "message_id = ?", "version = ?", "submitted_at = ?"]
                    values += [decision.content_sha, decision.message_id or "", decision.version or row.version, now]
                cur.execute(db.sql(f"UPDATE claims SET {', '.join(sets)} WHERE id = ?"), (*values, claim_id))
            elif row.requested:
                cur.execute(db.sql("UPDATE claims SET requested = '' WHERE id = ?"), (claim_id,))
            after = self._lock(cur, claim_id)
            assert after is not None
            return self._row(after)

        result: ClaimRow = db.commit(work)
        return result

    def close(self, claim_id: str, reason: str) -> bool:
        """Close an open claim (quiet period, operator); False if it was closed already."""
        db = self.db
        now = db.now()

        def work(cur: Any) -> bool:
            cur.execute(db.sql("UPDATE claims SET closed_at = ?, close_reason = ?, updated_at = ?, status = CASE"
                               " WHEN status = 'open' THEN 'closed' ELSE status END"
                               " WHERE id = ? AND closed_at IS NULL"), (now, reason, now, claim_id))
            return bool(cur.rowcount)

        done: bool = db.commit(work)
        return done

    def request(self, claim_id: str, what: str) -> bool:
        """Record an operator's request (`close`, `release`) for the engine to carry out; False: no such claim."""
        db = self.db

        def work(cur: Any) -> bool:
            cur.execute(db.sql("UPDATE claims SET requested = ? WHERE id = ?"), (what, claim_id))
            return bool(cur.rowcount)

        done: bool = db.commit(work)
        return done

    def respond(self, destination: str, claim_id: str, status: str, message_id: str) -> bool:
        """Link the insurer's answer (a ClaimResponse message) to a claim of `destination` that was sent;
        False: no such claim, or one never sent (an answer cannot accept what the insurer never had)."""
        db = self.db
        now = db.now()

        def work(cur: Any) -> bool:
            cur.execute(db.sql("UPDATE claims SET status = ?, response_id = ?, updated_at = ? WHERE id = ?"
                               " AND destination = ? AND version > 0"),
                        (status, message_id, now, claim_id, destination))
            return bool(cur.rowcount)

        done: bool = db.commit(work)
        return done

    # -- reads ------------------------------------------------------------------------------
    def get(self, claim_id: str) -> ClaimRow | None:
        rows = self.db.query(f"SELECT {_COLUMNS} FROM claims WHERE id = ?", (claim_id,))
        return self._row(rows[0]) if rows else None

    def find(self, prefix: str) -> list[ClaimRow]:
        """Claims whose id starts with `prefix` (an operator types the first characters)."""
        prefix = "".join(c for c in prefix if c.isalnum() or c == "-")  # an id's characters only, no wildcard
        if not prefix:
            return []
        rows = self.db.query(f"SELECT {_COLUMNS} FROM claims WHERE id LIKE ? ORDER BY id LIMIT 5", (prefix + "%",))
        return [self._row(r) for r in rows]

    def parts(self, claim_id: str) -> list[dict[str, Any]]:
        """The Bundle entries the claim is built from."""
        rows = self.db.query("SELECT part, entry FROM claim_parts WHERE claim_id = ? ORDER BY part", (claim_id,))
        return [orjson.loads(self.db.sealer.open(bytes(blob), f"{claim_id}/{part}")) for part, blob in rows]

    def search(self, *, destination: str | None = None, statuses: Iterable[str] = (), state: str = "",
               limit: int = 200) -> list[ClaimRow]:
        """Claims, most recently changed first; `statuses` are journal statuses, `state` what an operator
        sees (ClaimRow.state: `open` is not closed yet, `closed` is closed and not yet decided)."""
        where, params = [], []
        if destination:
            where.append("destination = ?")
            params.append(destination)
        wanted = list(statuses)
        if wanted:
            where.append(f"status IN ({','.join('?' * len(wanted))})")
            params += wanted
        if state == "open":
            where.append("status = 'open' AND closed_at IS NULL")
        elif state == "closed":
            where.append("(status = 'closed' OR (status = 'open' AND closed_at IS NOT NULL))")
        elif state:
            where.append("status = ?")
            params.append(state)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM claims{clause} ORDER BY updated_at DESC, id LIMIT ?",
                             (*params, limit))
        return [self._row(r) for r in rows]

    def quiet(self, destination: str, before: datetime) -> list[str]:
        """Open claims of `destination` with nothing new since `before`."""
        rows = self.db.query("SELECT id FROM claims WHERE destination = ? AND status = 'open' AND closed_at IS NULL"
                             " AND updated_at < ? ORDER BY updated_at",
                             (destination, self.db.dialect.ts(before)))
        return [r[0] for r in rows]

    def unsent(self, destination: str, before: datetime) -> list[tuple[str, str]]:
        """(claim id, message id) of the claims whose last Claim message is journaled but was never taken up
        (still `received` since before `before`): its publish was lost (a crash or a broker fault after the
        commit that journaled it), and no intake of this process will recover it."""
        rows = self.db.query("SELECT c.id, c.message_id FROM claims c JOIN messages m ON m.id = c.message_id"
                             " WHERE c.destination = ? AND c.version > 0 AND m.status = 'received'"
                             " AND m.received_at < ?", (destination, self.db.dialect.ts(before)))
        return [(r[0], r[1]) for r in rows]

    def pending(self, destination: str) -> list[ClaimRow]:
        """Claims of `destination` the engine has to look at: closed and not decided yet, or with an
        operator's request."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM claims WHERE destination = ? AND (requested <> ''"
                             " OR status = 'closed') ORDER BY updated_at",
                             (destination,))
        return [self._row(r) for r in rows]
