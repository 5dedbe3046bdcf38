"""The journal: every message received, every stage it went through, every output it produced.

Writes go through one group-commit writer per process; reads use a connection per thread.
Raw bodies and FHIR outputs are zlib-compressed, and encrypted when WASLA_JOURNAL_KEY is set
(engine.store.sealing); searches go through indexed metadata only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from engine.errors import StoreError
from engine.secret import secret
from engine.store import partitions
from engine.store.audit import AuditTrail
from engine.store.dialect import Dialect, dialect_for, json_text
from engine.store.ledger import DeliveryLedger, Replay
from engine.store.migrate import migrate
from engine.store.retention import Pruned, RetentionMixin
from engine.store.sealing import Sealer
from engine.store.writer import GroupCommitWriter, LoopCommitter, Work
from engine.types import Inbound, Status

__all__ = ["REUSED", "Journal", "KeyMatch", "MessageRow", "OutputRow", "Pruned", "Replay", "mapping_warnings",
           "open_journal"]

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class MessageRow:
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


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """What the duplicate check of `receive_work` found for a message's (channel, MSH-4, MSH-10).

    `same_content`: a duplicate of `message_id`, not journaled again. Otherwise the message was
    journaled as new and flagged CONTROL_ID_REUSED, `message_id` being the earlier one with the key.
    """

    message_id: str
    same_content: bool


@dataclass(frozen=True, slots=True)
class OutputRow:
    message_id: str
    destination: str
    status: str
    attempts: int
    location: str
    body: bytes


# The duplicate check (issue 23). Messages refused at intake (the sender was told to resend) do not count.
# `same`: the first message with the key and the same content (fingerprint; rows journaled before
# fingerprints, with '', by their exact bytes), a duplicate. `first`: otherwise the first with the
# key, whose control id the new message reuses. Each probe is an equality on an index prefix
# ordered by time (migrations 0002 and 0009): one index range, whatever the number of messages
# that share the key (a sender whose control id never changes); a planner given `fingerprint IN
# (...)` chose the time index instead and walked all of them.
_KEY = ("channel = ? AND sender = ? AND control_id = ? AND received_at >= ?"
        " AND NOT (status = 'failed' AND stage = 'intake')")


def _same(key: str, fp: str, sha: str) -> str:
    return ("SELECT id FROM (SELECT * FROM (SELECT id, received_at FROM messages WHERE " + key
            + f" AND fingerprint = {fp} ORDER BY received_at LIMIT 1) a UNION ALL SELECT * FROM (SELECT id,"
            " received_at FROM messages WHERE " + key + f" AND fingerprint = '' AND sha256 = {sha}"
            " ORDER BY received_at LIMIT 1) b) c ORDER BY received_at LIMIT 1")


_SAME = _same(_KEY, "?", "?")
_FIRST = "SELECT id FROM messages WHERE " + _KEY + " ORDER BY received_at LIMIT 1"
REUSED = "CONTROL_ID_REUSED"

_INSERT_MESSAGE = ("INSERT INTO messages (id, channel, received_at, updated_at, message_type, control_id, sender,"
                   " status, stage, reason, patient_key, size, sha256, raw, fingerprint, reused_of)")
# On PostgreSQL the body goes to `bodies` (daily partitions, engine.store.partitions); messages.raw stays empty.
_PG_BODY = " bod AS (INSERT INTO bodies (message_id, part, body) SELECT id, '', %s FROM ins),"
_PG_RECEIVE = (
    "WITH ins AS (" + _INSERT_MESSAGE + " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'',%s,'') RETURNING id),"
    + _PG_BODY +
    " ev AS (INSERT INTO events (message_id, at, stage, status, detail) SELECT id, %s, 'intake', %s, %s FROM ins)"
    " SELECT 1")
# The check, the insert (or the duplicate's count and event) and the events in one statement, one round trip.
_PG_KEY = ("channel = %(channel)s AND sender = %(sender)s AND control_id = %(control_id)s"
           " AND received_at >= %(since)s AND NOT (status = 'failed' AND stage = 'intake')")
_PG_RECEIVE_CHECKED = (
    "WITH same AS (" + _same(_PG_KEY, "%(fp)s", "%(sha)s") + "),"
    " first AS (SELECT id FROM messages WHERE " + _PG_KEY + " AND NOT EXISTS (SELECT 1 FROM same)"
    " ORDER BY received_at LIMIT 1),"
    " ins AS (" + _INSERT_MESSAGE + " SELECT %(id)s, %(channel)s, %(at)s, %(at)s, %(type)s, %(control_id)s,"
    " %(sender)s, %(status)s, 'intake', %(reason)s, %(patient_key)s, %(size)s, %(sha)s, '', %(fp)s,"
    " COALESCE((SELECT id FROM first), '') WHERE NOT EXISTS (SELECT 1 FROM same) RETURNING id, reused_of),"
    " bod AS (INSERT INTO bodies (message_id, part, body) SELECT id, '', %(body)s FROM ins),"
    " ev AS (INSERT INTO events (message_id, at, stage, status, detail) SELECT id, %(at)s, 'intake', %(status)s,"
    " CASE WHEN reused_of = '' THEN %(detail)s::jsonb ELSE %(detail)s::jsonb"
    " || jsonb_build_object('flag', '" + REUSED + "', 'reused_of', reused_of) END FROM ins),"
    " cnt AS (UPDATE messages SET duplicates = duplicates + 1 WHERE id = (SELECT id FROM same)),"
    " dev AS (INSERT INTO events (message_id, at, stage, status, detail)"
    " SELECT id, %(at)s, 'intake', 'duplicate', %(dup_detail)s::jsonb FROM same)"
    " SELECT id, true FROM same UNION ALL SELECT id, false FROM first")

_MSG_COLS = ("id, channel, received_at, message_type, control_id, sender, status, stage, reason, patient_key,"
             " size, sha256, reused_of, duplicates, raw")



_PG_OUTPUT_BODY = (
    "INSERT INTO bodies (message_id, part, body) VALUES (%s,%s,%s) ON CONFLICT (message_id, part) DO UPDATE"
    " SET body = excluded.body WHERE NOT EXISTS (SELECT 1 FROM outputs o"
    " WHERE o.message_id = bodies.message_id COLLATE \"default\""
    " AND o.destination = bodies.part AND o.status = 'delivered')")


def _many(cur: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """executemany, except for one row: psycopg runs executemany as a pipeline, two extra round trips."""
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    elif rows:
        cur.executemany(sql, rows)


class Journal(DeliveryLedger, AuditTrail, RetentionMixin):
    def __init__(self, url: str, *, group_commit_ms: float = 0.0, clock: Clock = _utcnow) -> None:
        self.dialect: Dialect = dialect_for(url)
        self.clock = clock
        self.sealer = Sealer()  # zlib, and AES-GCM when WASLA_JOURNAL_KEY is set
        conn = self.dialect.connect()
        try:
            self.schema_version = migrate(self.dialect, conn)
        finally:
            conn.close()
        if self.dialect.name == "postgresql":
            self._msg_cols = _MSG_COLS.removesuffix("raw") + partitions.body_of("messages.id", "''")
            self.ensure_partitions()
        else:
            self._msg_cols = _MSG_COLS
        self._local = threading.local()
        self._writer = GroupCommitWriter(self.dialect.connect, max_wait_ms=group_commit_ms)
        self._committers: dict[asyncio.AbstractEventLoop, LoopCommitter] = {}
        self._hash_key = self._load_hash_key()
        self._closing = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.dialect.name == "sqlite":
            self._checkpointer = threading.Thread(target=self._checkpoints, name="wasla-journal-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    # -- plumbing ---------------------------------------------------------------------------
    def _sql(self, s: str) -> str:
        return self.dialect.sql(s)

    def _read(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.dialect.connect()
            if self.dialect.name == "postgresql":
                conn.autocommit = True
            else:
                conn.isolation_level = None
            self._local.conn = conn
            self._all_readers().append(conn)
        return conn

    def _all_readers(self) -> list[Any]:
        if not hasattr(self, "_readers"):
            self._readers: list[Any] = []
        return self._readers

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read on this thread's connection; one that broke (PostgreSQL restarted, a network
        cut) is replaced and the read tried once more: a read changes nothing, so repeating it is safe.
        A connection still lost then is a StoreError, as a failed write is: workers hold their batch."""
        for attempt in (1, 2):
            conn = self._read()
            try:
                cur = conn.cursor()
                cur.execute(self._sql(sql), params)
                return list(cur.fetchall())
            except Exception as exc:
                if not (getattr(conn, "broken", False) or getattr(conn, "closed", False)):
                    raise
                self._local.conn = None
                with contextlib.suppress(Exception):  # already broken: closing is best effort
                    conn.close()
                with contextlib.suppress(ValueError):
                    self._all_readers().remove(conn)
                if attempt == 2:
                    raise StoreError(f"journal unavailable: {exc.__class__.__name__}") from exc
        raise AssertionError("unreachable")

    def _committer(self) -> LoopCommitter | None:
        """The group commit of the event loop running on this thread, if one is."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        committer = self._committers.get(loop)
        if committer is None:
            committer = self._committers[loop] = LoopCommitter(self._writer, loop)
        return committer

    def commit(self, work: Work, timeout: float = 60.0) -> Any:
        """From a plain thread: `work` committed by the writer thread (group commit); its result."""
        return self._writer.run(work, timeout)

    def commit_async(self, work: Work) -> asyncio.Future[Any]:
        """From an event loop: `work` committed on the loop's thread with this iteration's other work."""
        committer = self._committer()
        if committer is None:
            raise RuntimeError("commit_async needs a running event loop")
        return committer.submit(work)

    def flush_loop(self) -> None:
        """Commit the running loop's lazy work now (before the loop ends)."""
        committer = self._committer()
        if committer is not None:
            committer.flush()
            self._committers.pop(asyncio.get_running_loop(), None)

    def _lazy(self, work: Work) -> None:
        committer = self._committer()
        if committer is not None:
            committer.lazy(work)
        else:
            self._writer.submit(work, lazy=True)

    def _checkpoints(self, every_s: float = 1.0, wal_max_bytes: int = 64 << 20) -> None:
        """Copy the SQLite WAL into the database now and then, off the commit path.

        SQLite's automatic checkpoint would run inside whichever commit crosses the threshold,
        adding its fsync of the database file to that sender's ACK latency. A PASSIVE
        checkpoint never blocks the writer. But under steady traffic a commit always lands just
        after it, so the WAL is never wholly copied when the next write begins and SQLite never
        starts it over: the soak saw it reach 1.2 GB after 17,000 messages. Past `wal_max_bytes` a
        TRUNCATE checkpoint waits for the readers, copies the rest and empties the file; writers
        wait for it (a fraction of a second, once per tens of thousands of messages).
        """
        conn = self.dialect.connect()
        wal = Path(urlparse(self.dialect.url).path + "-wal")
        try:
            while not self._closing.wait(every_s):
                with contextlib.suppress(Exception):  # busy or locked: the next round catches up
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    if wal.exists() and wal.stat().st_size > wal_max_bytes:
                        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        self._closing.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
        self._writer.close()
        for conn in self._all_readers():
            with contextlib.suppress(Exception):  # best effort: already broken or absent
                conn.close()

    def _load_hash_key(self) -> bytes:
        """The key for patient-key hashes: from WASLA_PATIENT_KEY_SECRET, else made once and kept in `meta`.

        A keyed hash, not a bare sha256: an 8-digit hospital IPP hashed without a key is reversed
        by trying every number.
        """
        return self.meta_secret("patient_key_secret", "WASLA_PATIENT_KEY_SECRET")

    def meta_secret(self, key: str, env: str) -> bytes:
        """A secret from the environment variable `env`, else made once and shared through `meta` by
        every process of this journal."""
        value = secret(env)
        if value:
            return value.encode()
        candidate = secrets.token_hex(32)
        ins = ("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)" if self.dialect.name == "sqlite"
               else "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")

        def work(cur: Any) -> None:
            cur.execute(self._sql(ins), (key, candidate))

        self._writer.run(work)
        return str(self._query("SELECT value FROM meta WHERE key = ?", (key,))[0][0]).encode()

    def patient_key(self, system: str, value: str) -> str:
        if not value:
            return ""
        return hmac.digest(self._hash_key, f"{system}|{value}".encode(), "sha256").hex()[:32]

    def _event(self, cur: Any, message_id: str, stage: str, status: str, detail: dict[str, Any] | None,
               at: Any = None) -> None:
        self._events(cur, [(message_id, stage, status, detail)], at or self.dialect.ts(self.clock()))

    def _events(self, cur: Any, events: list[tuple[str, str, str, dict[str, Any] | None]], at: Any) -> None:
        sql = self._sql("INSERT INTO events (message_id, at, stage, status, detail) VALUES (?, ?, ?, ?, ?)")
        rows = [(mid, at, stage, status, json_text(detail or {})) for mid, stage, status, detail in events]
        _many(cur, sql, rows)

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
        return self._writer.submit(self.receive_work(msg, detail, duplicate_since=duplicate_since,
                                                     duplicate_detail=duplicate_detail, fingerprint=fingerprint))

    def receive_work(self, msg: Inbound, detail: dict[str, Any] | None = None, *,
                     duplicate_since: datetime | None = None,
                     duplicate_detail: dict[str, Any] | None = None,
                     fingerprint: str = "") -> Work:
        """The write of `submit_receive`, for the caller to commit where it suits (`commit_async`)."""
        now = self.dialect.ts(msg.received_at)
        sha = hashlib.sha256(msg.raw).hexdigest()
        fp = fingerprint or sha
        row = (msg.id, msg.channel, now, now, msg.message_type, msg.control_id, msg.sender, msg.status,
               "intake", msg.reason, msg.patient_key, len(msg.raw), sha, self.sealer.seal(msg.raw, msg.id))
        check = duplicate_since is not None and bool(msg.control_id)
        since = self.dialect.ts(duplicate_since) if duplicate_since is not None else None
        dup_detail = {"sha256": sha, **(duplicate_detail or {})}

        if self.dialect.name == "postgresql":
            return self._receive_work_pg(row, fp, detail, since if check else None, dup_detail)

        def work(cur: Any) -> KeyMatch | None:
            earlier = None
            if check:
                key = (msg.channel, msg.sender, msg.control_id, since)
                cur.execute(_SAME, (*key, fp, *key, sha))
                found = cur.fetchone()
                if found is not None:
                    cur.execute("UPDATE messages SET duplicates = duplicates + 1 WHERE id = ?", (found[0],))
                    self._event(cur, str(found[0]), "intake", "duplicate", dup_detail)
                    return KeyMatch(str(found[0]), True)
                cur.execute(_FIRST, key)
                found = cur.fetchone()
                earlier = KeyMatch(str(found[0]), False) if found is not None else None
            cur.execute(_INSERT_MESSAGE + " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (*row, fp, earlier.message_id if earlier else ""))
            flag = {"flag": REUSED, "reused_of": earlier.message_id} if earlier else {}
            self._event(cur, msg.id, "intake", msg.status, {**(detail or {}), **flag} if flag else detail)
            return earlier

        return work

    def _receive_work_pg(self, row: tuple[Any, ...], fp: str, detail: dict[str, Any] | None, since: Any,
                         dup_detail: dict[str, Any]) -> Work:
        """`receive_work` on PostgreSQL: the duplicate check, the insert and its event in one statement.

        Each statement is a network round trip (~120 µs here); the three of them were half the
        time of an ACK on PostgreSQL. A duplicate's count and event ride in the same statement.
        """
        if since is None:
            params = (*row[:13], fp, row[13], row[2], row[7], json_text(detail or {}))

            def plain(cur: Any) -> None:
                cur.execute(_PG_RECEIVE, params)

            return plain
        (mid, channel, at, _, mtype, control_id, sender, status, _, reason, patient_key, size, sha, body) = row
        named = {"id": mid, "channel": channel, "at": at, "type": mtype, "control_id": control_id,
                 "sender": sender, "status": status, "reason": reason, "patient_key": patient_key, "size": size,
                 "sha": sha, "body": body, "fp": fp, "since": since, "detail": json_text(detail or {}),
                 "dup_detail": json_text(dup_detail)}

        def work(cur: Any) -> KeyMatch | None:
            cur.execute(_PG_RECEIVE_CHECKED, named)
            found = cur.fetchone()
            return KeyMatch(str(found[0]), bool(found[1])) if found is not None else None

        return work

    def note(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        """Record an event nobody waits for (e.g. the ACK sent); it is committed shortly, timed now."""
        at = self.dialect.ts(self.clock())
        self._lazy(lambda cur: self._event(cur, message_id, stage, status, detail, at))

    def connection_opened(self, conn_id: str, channel: str, peer: str, client: str = "",
                          outcome: str = "open") -> None:
        at = self.dialect.ts(self.clock())
        closed = at if outcome != "open" else None
        self._lazy(lambda cur: cur.execute(self._sql(
            "INSERT INTO connections (id, channel, peer, client, opened_at, closed_at, outcome)"
            " VALUES (?,?,?,?,?,?,?)"), (conn_id, channel, peer, client, at, closed, outcome)))

    def connection_closed(self, conn_id: str, messages: int, outcome: str = "closed") -> None:
        at = self.dialect.ts(self.clock())
        self._lazy(lambda cur: cur.execute(self._sql(
            "UPDATE connections SET closed_at = ?, messages = ?, outcome = ? WHERE id = ?"),
            (at, messages, outcome, conn_id)))

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
        """`transformed` for a batch of messages, in one transaction."""
        now = self.dialect.ts(self.clock())
        upsert = self._sql("INSERT INTO outputs (message_id, destination, status, updated_at, body)"
                           " VALUES (?,?,?,?,?) ON CONFLICT (message_id, destination) DO UPDATE SET"
                           " body = excluded.body, updated_at = excluded.updated_at"
                           " WHERE outputs.status <> 'delivered'")
        mark = self._sql("UPDATE messages SET status = ?, stage = 'transform', reason = '', updated_at = ?"
                         " WHERE id = ? AND status IN ('received', 'transformed', 'failed')")
        rows = [(mid, dest, "pending", now, self.sealer.seal(body, f"{mid}/{dest}"))
                for mid, outputs, _ in items for dest, body in outputs.items()]
        bodies: list[tuple[Any, ...]] = []
        if self.dialect.name == "postgresql":  # the body to its day's partition, as a delivered one stays
            bodies = [(mid, dest, body) for mid, dest, _, _, body in rows]
            rows = [(mid, dest, status, at, None) for mid, dest, status, at, _ in rows]

        mark_filtered = self._sql("UPDATE messages SET status = ?, stage = 'route', reason = ?, updated_at = ?"
                                  " WHERE id = ? AND status IN ('received', 'transformed', 'failed')")
        sent = [(mid, detail) for mid, outputs, detail in items if outputs]
        kept = [(mid, detail or {}) for mid, outputs, detail in items if not outputs]

        def work(cur: Any) -> None:
            if rows:
                _many(cur, upsert, rows)
            _many(cur, _PG_OUTPUT_BODY, bodies)
            _many(cur, mark, [(Status.TRANSFORMED, now, mid) for mid, _ in sent])
            self._events(cur, [(mid, "transform", Status.TRANSFORMED, detail) for mid, detail in sent], now)
            if kept:  # no destination takes them: final, with each destination's reason
                why = [str(d.get("filtered", "no destination")) for _, d in kept]
                _many(cur, mark_filtered, [(Status.FILTERED, w[:2000], now, mid)
                                           for (mid, _), w in zip(kept, why, strict=True)])
                self._events(cur, [(mid, "route", Status.FILTERED, d) for mid, d in kept], now)

        fut = self._writer.submit(work, lazy=not wait)
        if wait:
            fut.result(60)

    def failed(self, message_id: str, stage: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        now = self.dialect.ts(self.clock())

        def work(cur: Any) -> None:
            cur.execute(self._sql("UPDATE messages SET status = ?, stage = ?, reason = ?, updated_at = ? WHERE id = ?"),
                        (Status.FAILED, stage, reason[:2000], now, message_id))
            self._event(cur, message_id, stage, Status.FAILED, {"reason": reason[:2000], **(detail or {})})

        self._writer.run(work)

    def park(self, message_id: str, sender: str, codes: list[tuple[str, str]], reason: str,
             detail: dict[str, Any] | None = None) -> None:
        """Hold a message until each (code map, local code) of `codes` has a mapping."""
        now = self.dialect.ts(self.clock())

        def work(cur: Any) -> None:
            cur.execute(self._sql("UPDATE messages SET status = ?, stage = 'transform', reason = ?, updated_at = ?"
                                  " WHERE id = ?"), (Status.PARKED, reason[:2000], now, message_id))
            _many(cur, self._sql("INSERT INTO parked (message_id, code_map, local_code, sender, parked_at)"
                                 " VALUES (?,?,?,?,?) ON CONFLICT DO NOTHING"),
                  [(message_id, m, c, sender, now) for m, c in codes])
            self._event(cur, message_id, "transform", Status.PARKED, {"reason": reason[:2000], **(detail or {})})

        self._writer.run(work)

    def parked_codes(self) -> list[tuple[str, str, str, int, datetime, datetime]]:
        """(code map, local code, sender, messages, first parked, last parked), most messages first."""
        rows = self._query("SELECT code_map, local_code, sender, COUNT(*), MIN(parked_at), MAX(parked_at)"
                           " FROM parked GROUP BY code_map, local_code, sender ORDER BY COUNT(*) DESC, code_map,"
                           " local_code")
        return [(m, c, s, int(n), self.dialect.from_ts(a), self.dialect.from_ts(b)) for m, c, s, n, a, b in rows]

    def release(self, code_map: str, is_mapped: Callable[[str], bool]) -> list[MessageRow]:
        """Un-park the messages of `code_map` whose every parked code `is_mapped` now; they go back to
        `received` for a new transform. Returns them (only to the caller that released them)."""
        rows = self._query("SELECT message_id, local_code FROM parked WHERE code_map = ?", (code_map,))
        waiting: dict[str, list[str]] = {}
        for mid, code in rows:
            waiting.setdefault(mid, []).append(code)
        ready = [mid for mid, codes in waiting.items() if all(is_mapped(c) for c in codes)]
        if not ready:
            return []
        now = self.dialect.ts(self.clock())

        def work(cur: Any) -> list[str]:
            mine = []
            for mid in ready:
                cur.execute(self._sql("DELETE FROM parked WHERE message_id = ? AND code_map = ?"), (mid, code_map))
                if cur.rowcount:  # another worker may have released it first: only one re-runs it
                    mine.append(mid)
            left = self._sql("SELECT 1 FROM parked WHERE message_id = ?")
            for mid in list(mine):
                cur.execute(left, (mid,))
                if cur.fetchone():  # still waiting on another map's code
                    mine.remove(mid)
            _many(cur, self._sql("UPDATE messages SET status = ?, reason = '', updated_at = ? WHERE id = ?"
                                 " AND status = ?"), [(Status.RECEIVED, now, mid, Status.PARKED) for mid in mine])
            self._events(cur, [(mid, "nomenclature", "released", {"code_map": code_map}) for mid in mine], now)
            return mine

        released = self._writer.run(work)
        return [row for row in (self.get(mid) for mid in released) if row is not None]

    def file_claim(self, channel: str, sha256: str, name: str) -> str | None:
        """Record a file about to be taken in; returns the name it had when seen before (then skip it)."""
        now = self.dialect.ts(self.clock())

        def work(cur: Any) -> str | None:
            cur.execute(self._sql("SELECT name FROM files WHERE channel = ? AND sha256 = ?"), (channel, sha256))
            found = cur.fetchone()
            if found is not None:
                return str(found[0])
            cur.execute(self._sql("INSERT INTO files (channel, sha256, name, received_at, status)"
                                  " VALUES (?,?,?,?,'processing')"), (channel, sha256, name, now))
            return None

        return self._writer.run(work)  # type: ignore[no-any-return]

    def file_status(self, channel: str, sha256: str) -> tuple[str, int, int, int] | None:
        """(status, rows read, messages, rejected) of a file, or None if not seen."""
        rows = self._query("SELECT status, rows_read, messages, rejected FROM files WHERE channel = ? AND sha256 = ?",
                           (channel, sha256))
        return (str(rows[0][0]), int(rows[0][1]), int(rows[0][2]), int(rows[0][3])) if rows else None

    def file_done(self, channel: str, sha256: str, status: str, rows_read: int, messages: int, rejected: int) -> None:
        def work(cur: Any) -> None:
            cur.execute(self._sql("UPDATE files SET status = ?, rows_read = ?, messages = ?, rejected = ?"
                                  " WHERE channel = ? AND sha256 = ?"),
                        (status, rows_read, messages, rejected, channel, sha256))

        self._writer.run(work)

    def output_writing(self, message_id: str, destination: str, location: str) -> None:
        """Record the intent to write at `location` before writing: recovery checks it there."""
        self.outputs_writing(destination, [(message_id, location)])

    def outputs_writing(self, destination: str, items: list[tuple[str, str]]) -> None:
        """`output_writing` for a batch, in one commit: (message id, location) pairs."""
        now = self.dialect.ts(self.clock())
        sql = self._sql("UPDATE outputs SET status = 'writing', location = ?, attempts = attempts + 1,"
                        " updated_at = ? WHERE message_id = ? AND destination = ?")
        self._writer.run(lambda cur: _many(cur, sql, [(loc, now, mid, destination) for mid, loc in items]))

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
        now = self.dialect.ts(self.clock())
        out = self._sql("UPDATE outputs SET status = 'delivered', location = ?, response = ?, updated_at = ?"
                        " WHERE message_id = ? AND destination = ?")
        msg = self._sql("UPDATE messages SET status = 'delivered', stage = 'deliver', updated_at = ? WHERE id = ?"
                        " AND status <> 'delivered' AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.message_id = ?"
                        " AND o.status <> 'delivered')")

        def work(cur: Any) -> int:
            _many(cur, out, [(loc, resp, now, mid, destination) for mid, loc, resp in items])
            self._events(cur, [(mid, "deliver", Status.DELIVERED, {"destination": destination, "location": loc})
                               for mid, loc, _ in items], now)
            done = 0
            for mid, _, _ in items:
                cur.execute(msg, (now, mid, mid))
                done += max(cur.rowcount, 0)
            return done

        fut = self._writer.submit(work, lazy=not wait)
        return int(fut.result(60)) if wait else 0

    def event(self, message_id: str, stage: str, status: str, detail: dict[str, Any] | None = None) -> None:
        self._writer.run(lambda cur: self._event(cur, message_id, stage, status, detail))

    # -- reads ------------------------------------------------------------------------------
    def _row(self, r: tuple[Any, ...], raw: bool = True) -> MessageRow:
        """A row of `_MSG_COLS`; with `raw=False`, of the same columns without the body."""
        body = self.sealer.open(self.dialect.blob(r[14]), r[0]) if raw else b""  # empty once retention erased it
        return MessageRow(r[0], r[1], self.dialect.from_ts(r[2]), r[3], r[4], r[5], r[6], r[7], r[8], r[9],
                          int(r[10]), r[11], body, reused_of=r[12], duplicates=int(r[13]))

    def present(self, message_ids: list[str]) -> set[str]:
        """Which of these messages the journal holds (committed)."""
        if not message_ids:
            return set()
        marks = ",".join("?" * len(message_ids))
        return {str(r[0]) for r in self._query(f"SELECT id FROM messages WHERE id IN ({marks})", tuple(message_ids))}

    def get(self, message_id: str) -> MessageRow | None:
        rows = self._query(f"SELECT {self._msg_cols} FROM messages WHERE id = ?", (message_id,))
        return self._row(rows[0]) if rows else None

    def head(self, message_id: str, limit: int) -> MessageRow | None:
        """`get` with only the first `limit` bytes of the raw body in `raw` (`size` is the whole
        body's): what a page shows, without inflating a large body."""
        rows = self._query(f"SELECT {self._msg_cols} FROM messages WHERE id = ?", (message_id,))
        if not rows:
            return None
        r = rows[0]
        return replace(self._row(r, raw=False), raw=self.sealer.open(self.dialect.blob(r[14]), r[0], limit))

    def output(self, message_id: str, destination: str, limit: int | None = None) -> OutputRow | None:
        """One destination's output; with `limit`, only the first `limit` bytes of its body."""
        pg = self.dialect.name == "postgresql"
        body = partitions.body_of("outputs.message_id", "outputs.destination") if pg else "body"
        rows = self._query(f"SELECT message_id, destination, status, attempts, location, {body} FROM outputs"
                           " WHERE message_id = ? AND destination = ?", (message_id, destination))
        if not rows:
            return None
        r = rows[0]
        body = self.sealer.open(self.dialect.blob(r[5]), f"{r[0]}/{r[1]}", limit) if r[5] is not None else b""
        return OutputRow(r[0], r[1], r[2], int(r[3]), r[4], body)

    def earlier_fhir(self, patient_key: str, received_at: datetime, message_id: str, limit: int = 10) -> list[bytes]:
        """The FHIR this engine made from the patient's messages received before this one, newest first
        (one body per message): what it last wrote of a resource a message leaves unstated."""
        if not patient_key:
            return []
        pg = self.dialect.name == "postgresql"
        body = partitions.body_of("o.message_id", "o.destination") if pg else "o.body"
        rows = self._query(
            f"SELECT m.id, o.destination, {body} FROM messages m JOIN outputs o ON o.message_id = m.id"
            " WHERE m.patient_key = ? AND m.received_at <= ? AND m.id <> ?"
            " ORDER BY m.received_at DESC, m.id DESC LIMIT ?",
            (patient_key, self.dialect.ts(received_at), message_id, limit * 4))
        found: list[bytes] = []
        seen: set[str] = set()
        for mid, dest, blob in rows:
            if mid in seen or blob is None or len(found) >= limit:
                continue
            seen.add(mid)
            found.append(self.sealer.open(self.dialect.blob(blob), f"{mid}/{dest}"))
        return found

    def outputs(self, message_ids: list[str], destination: str) -> dict[str, OutputRow]:
        """`output` for many messages in one query (without bodies): id → row, for those that have one."""
        if not message_ids:
            return {}
        marks = ",".join("?" * len(message_ids))
        rows = self._query("SELECT message_id, destination, status, attempts, location FROM outputs"
                           f" WHERE destination = ? AND message_id IN ({marks})", (destination, *message_ids))
        return {r[0]: OutputRow(r[0], r[1], r[2], int(r[3]), r[4], b"") for r in rows}

    def events(self, message_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT at, stage, status, detail FROM events WHERE message_id = ? ORDER BY at, id",
                           (message_id,))
        out = []
        for at, stage, status, detail in rows:
            d = detail if isinstance(detail, dict) else orjson.loads(detail)
            out.append({"at": self.dialect.from_ts(at).isoformat(), "stage": stage, "status": status, "detail": d})
        return out

    def unfinished(self, batch: int = 500) -> Iterator[MessageRow]:
        """Messages journaled but not in a final state, oldest first (re-enqueued at start)."""
        last = ""
        while True:
            rows = self._query(f"SELECT {self._msg_cols} FROM messages WHERE status IN (?, ?) AND id > ?"
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
        identifier (`patient_key(system, value)`), never the identifier; `output_status` (with
        `destination`) keeps the messages whose output there is in that state (`dead`, `waiting` …);
        `before` is the cursor of the next page: (received_at, id) of the last row of the previous one.
        `reused` keeps the messages flagged CONTROL_ID_REUSED (`reused_of` set), `duplicated` those
        that received true duplicates (`duplicates` > 0); each has a partial index on the time.
        """
        where, params = [], []
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
            else:  # every trigger: walk the time index and filter (SQLite's unary + keeps it off the type index)
                col = "+m.message_type" if self.dialect.name == "sqlite" else "m.message_type"
                where.append(f"{col} >= ? AND {col} < ?")
                params += [message_type + "^", message_type + "_"]  # '_' sorts right after '^'
        if since:
            where.append("m.received_at >= ?")
            params.append(self.dialect.ts(since))
        if until:
            where.append("m.received_at < ?")
            params.append(self.dialect.ts(until))
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
            at = self.dialect.ts(before[0])
            where.append("m.received_at <= ? AND (m.received_at < ? OR m.id < ?)")
            params += [at, at, before[1]]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        cols = ", ".join(f"m.{c.strip()}" for c in _MSG_COLS.split(",")[:-1])
        rows = self._query(f"SELECT {cols} FROM messages m{join}{clause} ORDER BY {order} LIMIT {int(limit)}",
                           tuple(params))
        return [self._row(r, raw=False) for r in rows]

    def connections(self, channel: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest inbound connections, newest first."""
        clause, params = ("WHERE channel = ?", (channel,)) if channel else ("", ())
        rows = self._query("SELECT id, channel, peer, client, opened_at, closed_at, messages, outcome"
                           f" FROM connections {clause} ORDER BY id DESC LIMIT {int(limit)}", params)
        keys = ("id", "channel", "peer", "client", "opened_at", "closed_at", "messages", "outcome")
        out = []
        for r in rows:
            item = dict(zip(keys, r, strict=True))
            for k in ("opened_at", "closed_at"):
                if item[k] is not None:
                    item[k] = self.dialect.from_ts(item[k]).isoformat()
            out.append(item)
        return out

    def counts(self) -> dict[str, int]:
        return {s: int(n) for s, n in self._query("SELECT status, COUNT(*) FROM messages GROUP BY status")}


def open_journal(url: str, *, group_commit_ms: float = 0.0) -> Journal:
    return Journal(url, group_commit_ms=group_commit_ms)


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
