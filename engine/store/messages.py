"""Messages: what was received, its events and status changes, and the reads and searches over them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson

from engine.store.database import Database
from engine.store.receive import KeyMatch, Receipt
from engine.store.writer import Work
from engine.types import Inbound, Status

__all__ = ["MessageRow", "Messages", "mapping_warnings"]

_MSG_COLS = ("id, channel, received_at, message_type, control_id, sender, status, stage, reason, patient_key,"
             " size, sha256, reused_of, duplicates")


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A journaled message: its metadata and (unless read without it) its raw body."""

    id: str
    channel: str
    received_at: datetime
    message_type: str
    control_id: str
    sender: str
    status: str
    stage: str
    reason: str
    patient_key: str
    size: int
    sha256: str
    raw: bytes
    reused_of: str = ""  # CONTROL_ID_REUSED: the earlier message that came with this MSH-4 + MSH-10
    duplicates: int = 0  # true duplicates (same key, same content) answered AA and not processed again


class Messages:
    """The `messages` and `events` tables: owns receiving a message (with its duplicate check),
    its events and its status changes, and the reads by id, state or indexed metadata. Guarantees
    that a body is sealed when written and opened only when asked for (searches never read it)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cols = _MSG_COLS + ", " + db.dialect.body_of("messages.id", "''", "raw")

    # -- writes -----------------------------------------------------------------------------
    def receive(self, msg: Inbound, detail: dict[str, Any] | None = None) -> None:
        """Journal a message as received; returns once the commit holding it is durable."""
        self.submit_receive(msg, detail).result(60)

    def submit_receive(self, msg: Inbound, detail: dict[str, Any] | None = None, *,
                       duplicate_since: datetime | None = None,
                       duplicate_detail: dict[str, Any] | None = None,
                       fingerprint: str = "") -> Future[KeyMatch | None]:
        """Queue a received message; the future resolves once it is durable.

        With `duplicate_since`, the check for an earlier (channel, MSH-4, MSH-10) and the insert
        happen in the same transaction. The future gives None when the key is new, a `KeyMatch`
        otherwise: the same content (`fingerprint`, engine.fingerprint; the sha256 of the bytes
        when not given) is a duplicate, not journaled again (a `duplicate` event and the count on
        the original); other content is journaled as a new message flagged CONTROL_ID_REUSED.
        """
        return self.db.submit(self.receive_work(msg, detail, duplicate_since=duplicate_since,
                                                duplicate_detail=duplicate_detail, fingerprint=fingerprint))

    def receive_work(self, msg: Inbound, detail: dict[str, Any] | None = None, *,
                     duplicate_since: datetime | None = None,
                     duplicate_detail: dict[str, Any] | None = None,
                     fingerprint: str = "") -> Work:
        """The write of `submit_receive`, for the caller to commit where it suits (`commit_async`)."""
        dialect = self.db.dialect
        sha = hashlib.sha256(msg.raw).hexdigest()
        check = duplicate_since is not None and bool(msg.control_id)
        return dialect.receive_work(Receipt(
            id=msg.id, channel=msg.channel, at=dialect.ts(msg.received_at), message_type=msg.message_type,
            control_id=msg.control_id, sender=msg.sender, status=msg.status, reason=msg.reason,
            patient_key=msg.patient_key, size=len(msg.raw), sha256=sha, body=self.db.sealer.seal(msg.raw, msg.id),
            fingerprint=fingerprint or sha,
            since=dialect.ts(duplicate_since) if check and duplicate_since is not None else None,
            detail=detail, dup_detail={"sha256": sha, **(duplicate_detail or {})}, now=self.db.now))

    def note(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        """Record an event nobody waits for (e.g. the ACK sent); it is committed shortly, timed now."""
        at = self.db.now()
        self.db.lazy(lambda cur: self.db.write_events(cur, [(message_id, stage, status, detail)], at))

    def event(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        """Record an event; returns once it is durable."""
        self.db.commit(lambda cur: self.db.write_events(cur, [(message_id, stage, status, detail)], self.db.now()))

    def failed(self, message_id: str, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        """Mark the message failed at `stage`, with its reason and event."""
        now = self.db.now()

        def work(cur: Any) -> None:
            cur.execute(self.db.sql("UPDATE messages SET status = ?, stage = ?, reason = ?, updated_at = ?"
                                    " WHERE id = ?"), (Status.FAILED, stage, reason[:2000], now, message_id))
            self.db.write_events(cur, [(message_id, stage, Status.FAILED,
                                        {"reason": reason[:2000], **(detail or {})})], self.db.now())

        self.db.commit(work)

    # -- reads ------------------------------------------------------------------------------
    def _row(self, r: tuple[Any, ...], raw: bool = True) -> MessageRow:
        """A row of the message columns and body; with `raw=False`, of the same columns without the body."""
        dialect = self.db.dialect
        body = self.db.sealer.open(dialect.blob(r[14]), r[0]) if raw else b""  # empty once retention erased it
        return MessageRow(r[0], r[1], dialect.from_ts(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                          int(r[10]), r[11], body, reused_of=r[12], duplicates=int(r[13]))

    def present(self, message_ids: list[str]) -> set[str]:
        """Which of these messages the journal holds (committed)."""
        if not message_ids:
            return set()
        marks = ",".join("?" * len(message_ids))
        return {str(r[0]) for r in self.db.query(f"SELECT id FROM messages WHERE id IN ({marks})",
                                                 tuple(message_ids))}

    def get(self, message_id: str) -> MessageRow | None:
        rows = self.db.query(f"SELECT {self._cols} FROM messages WHERE id = ?", (message_id,))
        return self._row(rows[0]) if rows else None

    def head(self, message_id: str, limit: int) -> MessageRow | None:
        """`get` with only the first `limit` bytes of the raw body in `raw` (`size` is the whole
        body's): what a page shows, without inflating a large body."""
        rows = self.db.query(f"SELECT {self._cols} FROM messages WHERE id = ?", (message_id,))
        if not rows:
            return None
        r = rows[0]
        return replace(self._row(r, raw=False), raw=self.db.sealer.open(self.db.dialect.blob(r[14]), r[0], limit))

    def events(self, message_id: str) -> list[dict[str, Any]]:
        rows = self.db.query("SELECT at, stage, status, detail FROM events WHERE message_id = ? ORDER BY at, id",
                             (message_id,))
        out = []
        for at, stage, status, detail in rows:
            d = detail if isinstance(detail, dict) else orjson.loads(detail)
            out.append({"at": self.db.dialect.from_ts(at).isoformat(), "stage": stage, "status": status,
                        "detail": d})
        return out

    def unfinished(self, batch: int = 500) -> Iterator[MessageRow]:
        """Messages journaled but not in a final state, oldest first (re-enqueued at start)."""
        last = ""
        while True:
            rows = self.db.query(f"SELECT {self._cols} FROM messages WHERE status IN (?, ?) AND id > ?"
                                 f" ORDER BY id LIMIT {int(batch)}", (*Status.UNFINISHED, last))
            if not rows:
                return
            for r in rows:
                yield self._row(r)
            last = rows[-1][0]

    def search(self, *, channel: str | None = None, status: str | None = None, control_id: str | None = None,
               message_type: str | None = None, sender: str | None = None, since: datetime | None = None,
               until: datetime | None = None, patient_key: str | None = None, destination: str | None = None,
               output_status: str | None = None, before: tuple[datetime, str] | None = None,
               reused: bool = False, duplicated: bool = False, limit: int = 50) -> list[MessageRow]:
        """Newest first, by indexed metadata only (the raw body is not read: rows carry raw=b"").

        `message_type` is `ADT^A01` or `ADT` (every trigger); `patient_key` is the keyed hash of an
        identifier (`Keys.patient_key(system, value)`), never the identifier; `output_status` (with
        `destination`) keeps the messages whose output there is in that state (`dead`, `waiting` …);
        `before` is the cursor of the next page: (received_at, id) of the last row of the previous one.
        `reused` keeps the messages flagged CONTROL_ID_REUSED (`reused_of` set), `duplicated` those
        that received true duplicates (`duplicates` > 0); each has a partial index on the time.
        """
        dialect = self.db.dialect
        where: list[str] = []
        params: list[Any] = []
        if reused:
            where.append("m.reused_of <> ''")
        if duplicated:
            where.append("m.duplicates > 0")
        for col, val in (("m.channel", channel), ("m.status", status), ("m.control_id", control_id),
                         ("m.sender", sender), ("m.patient_key", patient_key)):
            if val:
                where.append(f"{col} = ?")
                params.append(val)
        if message_type:
            if "^" in message_type:
                where.append("m.message_type = ?")
                params.append(message_type)
            else:  # every trigger: walk the time index and filter (kept off the type index)
                col = dialect.no_index("m.message_type")
                where.append(f"{col} >= ? AND {col} < ?")
                params += [message_type + "^", message_type + "_"]  # '_' sorts right after '^'
        if since:
            where.append("m.received_at >= ?")
            params.append(dialect.ts(since))
        if until:
            where.append("m.received_at < ?")
            params.append(dialect.ts(until))
        join, order = "", "m.received_at DESC, m.id DESC"
        if destination:  # outputs are walked by (destination, message id): ids are UUIDv7, in receipt order
            join, order = " JOIN outputs o ON o.message_id = m.id AND o.destination = ?", "o.message_id DESC"
            params.insert(0, destination)
            if output_status:
                where.append("o.status = ?")
                params.append(output_status)
            if before:
                where.append("o.message_id < ?")
                params.append(before[1])
        elif before:  # a range on the time index, then the tie on the id
            at = dialect.ts(before[0])
            where.append("m.received_at <= ? AND (m.received_at < ? OR m.id < ?)")
            params += [at, at, before[1]]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        cols = ", ".join(f"m.{c.strip()}" for c in _MSG_COLS.split(","))
        rows = self.db.query(f"SELECT {cols} FROM messages m{join}{clause} ORDER BY {order} LIMIT {int(limit)}",
                             tuple(params))
        return [self._row(r, raw=False) for r in rows]

    def counts(self) -> dict[str, int]:
        """status → messages."""
        return {s: int(n) for s, n in self.db.query("SELECT status, COUNT(*) FROM messages GROUP BY status")}

    def status_counts(self, since_epoch: float) -> dict[str, dict[str, int]]:
        """channel → status → messages received since then (the time index bounds the scan)."""
        since = self.db.dialect.ts(datetime.fromtimestamp(since_epoch, UTC))
        out: dict[str, dict[str, int]] = {}
        for ch, status, n in self.db.query("SELECT channel, status, COUNT(*) FROM messages WHERE received_at >= ?"
                                           " GROUP BY channel, status", (since,)):
            out.setdefault(str(ch), {})[str(status)] = int(n)
        return out

    def received_since(self, since_epoch: float) -> dict[str, int]:
        """channel → messages received since then."""
        since = self.db.dialect.ts(datetime.fromtimestamp(since_epoch, UTC))
        return {str(ch): int(n) for ch, n in self.db.query(
            "SELECT channel, COUNT(*) FROM messages WHERE received_at >= ? GROUP BY channel", (since,))}


def mapping_warnings(events: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The warnings of the message's latest conversion (a replay's replaces the earlier one's), as
    code, field, rule and detail: field paths and codes only, as the mapping recorded them.

    A conversion is journaled as a `transform` event (transformed, parked, failed) or, when no
    destination takes its result, a `route` one (filtered); one without warnings has none.
    """
    for ev in reversed(events):
        if ev["stage"] in ("transform", "route"):
            found = ev["detail"].get("warnings") or []
            return [{k: str(w.get(k, "")) for k in ("code", "field", "rule", "detail")}
                    for w in found if isinstance(w, dict)]
    return []
