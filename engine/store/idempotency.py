"""Idempotency keys (the REST channel's `Idempotency-Key`): one key, one message, one answer, in the journal.

A request with a key first *claims* it: an INSERT … ON CONFLICT DO NOTHING of a pending row (the
body's SHA-256, a claim id, the time), committed before its message is received. Of any number of
requests racing with one key (threads, processes, intake nodes sharing PostgreSQL) exactly one inserts
it; that one receives the message and *completes* the row with its answer (HTTP status, body, message
id). Every other request reads the row: another body → `Mismatch`; completed → the first `Answer`;
still pending → `Pending` (the channel waits a moment, then answers "in progress").

A claim whose request died between claim and completion (a crash, `kill -9`) must not hold its key
for ever: after `lease_s` it is stale, and the next request with the key *takes it over* (an UPDATE
conditional on the stale claim id: again only one wins), with `since` set to the stale claim's time.
The channel then looks for the message the dead request may have journaled (`journaled_since`: the
same bytes on the same channel since then) and completes the claim with it instead of receiving the
message twice. A key is kept `ttl_s` (a day); older rows no longer hold it and are pruned.

Keys are stored as their SHA-256 (a sender may put anything in a header); answers are sealed like
message bodies (`engine.store.sealing`).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.store.database import Database, HasDatabase, database_of

__all__ = ["Answer", "Claimed", "IdempotencyKeys", "Mismatch", "Pending", "State"]


@dataclass(frozen=True, slots=True)
class Claimed:
    """The key is the caller's: receive the message, then `complete` (or `release`) with `claim`."""

    claim: str
    since: datetime | None = None  # set when a stale claim was taken over: its time


@dataclass(frozen=True, slots=True)
class Answer:
    """The key was completed with the same body: this is the first answer."""

    status: int
    body: bytes
    message_id: str


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The key was used with another body."""


@dataclass(frozen=True, slots=True)
class Pending:
    """Another request holds the key and has not answered yet."""


State = Claimed | Answer | Mismatch | Pending

_COLS = "body_sha256, claim, claimed_at, status, answer, message_id"
_WHERE = " WHERE channel = ? AND client = ? AND key_sha256 = ?"


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class IdempotencyKeys:
    """The `idempotency` table (migration 0011): owns the claims of idempotency keys and their first
    answers. Guarantees one message and one answer per key, however many requests race (module doc)."""

    def __init__(self, db: Database | HasDatabase, *, lease_s: float = 60.0, ttl_s: float = 86400.0,
                 prune_every_s: float = 600.0) -> None:
        self.db = database_of(db)
        self.lease = timedelta(seconds=lease_s)
        self.ttl = timedelta(seconds=ttl_s)
        self._prune_every_s = prune_every_s
        self._pruned_at = 0.0

    def _sql(self, s: str) -> str:
        return self.db.dialect.sql(s)

    def _ts(self, value: datetime) -> Any:
        return self.db.dialect.ts(value)

    def _aad(self, channel: str, client: str, key: str) -> str:
        return f"idempotency/{channel}/{client}/{key}"

    # -- writes (blocking: call from a worker thread) ----------------------------------------------
    def claim(self, channel: str, client: str, key: str, body_sha256: str) -> State:
        """Claim `key` for a request whose body hashes to `body_sha256`, atomically; see the module doc."""
        kd, claim, now = key_digest(key), uuid.uuid4().hex, self.db.clock()
        prune = time.monotonic() - self._pruned_at > self._prune_every_s
        if prune:
            self._pruned_at = time.monotonic()
        ident = (channel, client, kd)

        def work(cur: Any) -> State:
            if prune:
                cur.execute(self._sql("DELETE FROM idempotency WHERE claimed_at < ?"), (self._ts(now - self.ttl),))
            cur.execute(self._sql(
                "INSERT INTO idempotency (channel, client, key_sha256, body_sha256, claim, claimed_at)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (channel, client, key_sha256) DO NOTHING"),
                (*ident, body_sha256, claim, self._ts(now)))
            if cur.rowcount == 1:
                return Claimed(claim)
            cur.execute(self._sql(f"SELECT {_COLS} FROM idempotency" + _WHERE), ident)
            row = cur.fetchone()
            if row is None:  # cannot happen inside one transaction; the next request claims it
                return Pending()
            sha, held_by, at = str(row[0]), str(row[1]), self.db.dialect.from_ts(row[2])
            expired = at < now - self.ttl
            if not expired and sha != body_sha256:
                return Mismatch()
            if not expired and row[3] is not None:
                return self._answer(channel, client, kd, row)
            if not expired and at >= now - self.lease:
                return Pending()
            # expired (any state, any body) or a stale claim (same body): take it over, if nobody did first
            cur.execute(self._sql(
                "UPDATE idempotency SET body_sha256 = ?, claim = ?, claimed_at = ?, status = NULL, answer = NULL,"
                " message_id = NULL" + _WHERE + " AND claim = ?"),
                (body_sha256, claim, self._ts(now), *ident, held_by))
            if cur.rowcount != 1:
                return Pending()
            return Claimed(claim, None if expired else at)

        result: State = self.db.commit(work)
        return result

    def complete(self, channel: str, client: str, key: str, claim: str, status: int, body: bytes,
                 message_id: str = "") -> bool:
        """Record the first answer; False when the claim was no longer the caller's (taken over)."""
        kd = key_digest(key)
        sealed = self.db.sealer.seal(body, self._aad(channel, client, kd))

        def work(cur: Any) -> bool:
            cur.execute(self._sql("UPDATE idempotency SET status = ?, answer = ?, message_id = ?" + _WHERE
                                  + " AND claim = ? AND status IS NULL"),
                        (status, sealed, message_id, channel, client, kd, claim))
            return bool(cur.rowcount == 1)

        done: bool = self.db.commit(work)
        return done

    def release(self, channel: str, client: str, key: str, claim: str) -> None:
        """Give the key up unanswered (the request failed before a final answer): a retry claims it anew."""
        ident = (channel, client, key_digest(key))
        self.db.commit(lambda cur: cur.execute(
            self._sql("DELETE FROM idempotency" + _WHERE + " AND claim = ? AND status IS NULL"), (*ident, claim)))

    # -- reads --------------------------------------------------------------------------------------
    def state(self, channel: str, client: str, key: str, body_sha256: str) -> State | None:
        """What a waiting request finds now, without writing: None when the key is free again (released,
        expired) or its claim is stale: the caller then claims it."""
        kd, now = key_digest(key), self.db.clock()
        rows = self.db.query(f"SELECT {_COLS} FROM idempotency" + _WHERE, (channel, client, kd))
        if not rows:
            return None
        row = rows[0]
        at = self.db.dialect.from_ts(row[2])
        if at < now - self.ttl:
            return None
        if str(row[0]) != body_sha256:
            return Mismatch()
        if row[3] is not None:
            return self._answer(channel, client, kd, row)
        return Pending() if at >= now - self.lease else None

    def journaled_since(self, channel: str, raw_sha256: str, since: datetime, margin_s: float = 5.0) -> str | None:
        """The id of a message with these exact bytes journaled on `channel` since `since` (less a margin
        for the clocks of other intake processes) and not refused at intake: what a request that died
        after receiving, before completing its claim, left behind."""
        rows = self.db.query(
            "SELECT id FROM messages WHERE channel = ? AND received_at >= ? AND sha256 = ?"
            " AND NOT (status = 'failed' AND stage = 'intake') ORDER BY received_at LIMIT 1",
            (channel, self._ts(since - timedelta(seconds=margin_s)), raw_sha256))
        return str(rows[0][0]) if rows else None

    def _answer(self, channel: str, client: str, kd: str, row: tuple[Any, ...]) -> Answer:
        body = self.db.sealer.open(self.db.dialect.blob(row[4]), self._aad(channel, client, kd))
        return Answer(int(row[3]), body, str(row[5] or ""))
