"""The intake write: a received message journaled with its first event, after the duplicate check.

The check looks for an earlier message with the same (channel, MSH-4, MSH-10). Messages
refused at intake (the sender was told to resend) do not count. `same`: the first message with the
key and the same content (fingerprint; rows journaled before fingerprints, with '', by their exact
bytes), a duplicate. `first`: otherwise the first with the key, whose control id the new message
reuses. Each probe is an equality on an index prefix ordered by time (migrations 0002 and 0009): one
index range, whatever the number of messages that share the key (a sender whose control id never
changes); a planner given `fingerprint IN (...)` chose the time index instead and walked all of them.

`steps` runs it as a few statements (SQLite, in process); `one_statement` as a single one (PostgreSQL,
where each statement is a network round trip).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.store.dialect import json_text
from engine.store.writer import Work

__all__ = ["REUSED", "KeyMatch", "Receipt", "one_statement", "steps"]

REUSED = "CONTROL_ID_REUSED"


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """What the duplicate check of `receive_work` found for a message's (channel, MSH-4, MSH-10).

    `same_content`: a duplicate of `message_id`, not journaled again. Otherwise the message was
    journaled as new and flagged CONTROL_ID_REUSED, `message_id` being the earlier one with the key.
    """

    message_id: str
    same_content: bool


@dataclass(frozen=True, slots=True)
class Receipt:
    """Everything the intake write needs, already in the database's values (times through `ts`,
    the body sealed). `since` is None when no duplicate check is made."""

    id: str
    channel: str
    at: Any
    message_type: str
    control_id: str
    sender: str
    status: str
    reason: str
    patient_key: str
    size: int
    sha256: str
    body: bytes
    fingerprint: str
    since: Any
    detail: dict[str, Any] | None
    dup_detail: dict[str, Any]
    now: Callable[[], Any]  # the time of the events written in steps (the database's value)


_KEY = ("channel = ? AND sender = ? AND control_id = ? AND received_at >= ?"
        " AND NOT (status = 'failed' AND stage = 'intake')")


def _same(key: str, fp: str, sha: str) -> str:
    return ("SELECT id FROM (SELECT * FROM (SELECT id, received_at FROM messages WHERE " + key
            + f" AND fingerprint = {fp} ORDER BY received_at LIMIT 1) a UNION ALL SELECT * FROM (SELECT id,"
            " received_at FROM messages WHERE " + key + f" AND fingerprint = '' AND sha256 = {sha}"
            " ORDER BY received_at LIMIT 1) b) c ORDER BY received_at LIMIT 1")


_SAME = _same(_KEY, "?", "?")
_FIRST = "SELECT id FROM messages WHERE " + _KEY + " ORDER BY received_at LIMIT 1"

INSERT_MESSAGE = ("INSERT INTO messages (id, channel, received_at, updated_at, message_type, control_id, sender,"
                  " status, stage, reason, patient_key, size, sha256, raw, fingerprint, reused_of)")
_INSERT_EVENT = "INSERT INTO events (message_id, at, stage, status, detail) VALUES (?, ?, ?, ?, ?)"

# On PostgreSQL the body goes to `bodies` (daily partitions, engine.store.partitions); messages.raw stays empty.
_PG_BODY = " bod AS (INSERT INTO bodies (message_id, part, body) SELECT id, '', %s FROM ins),"
_PG_RECEIVE = (
    "WITH ins AS (" + INSERT_MESSAGE + " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,'',%s,'') RETURNING id),"
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
    " ins AS (" + INSERT_MESSAGE + " SELECT %(id)s, %(channel)s, %(at)s, %(at)s, %(type)s, %(control_id)s,"
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


def steps(r: Receipt) -> Work:
    """The intake write as a few statements with `?` placeholders (the check, the insert, the event)."""
    row = (r.id, r.channel, r.at, r.at, r.message_type, r.control_id, r.sender, r.status, "intake", r.reason,
           r.patient_key, r.size, r.sha256, r.body)

    def work(cur: Any) -> KeyMatch | None:
        earlier = None
        if r.since is not None:
            key = (r.channel, r.sender, r.control_id, r.since)
            cur.execute(_SAME, (*key, r.fingerprint, *key, r.sha256))
            found = cur.fetchone()
            if found is not None:
                cur.execute("UPDATE messages SET duplicates = duplicates + 1 WHERE id = ?", (found[0],))
                cur.execute(_INSERT_EVENT, (str(found[0]), r.now(), "intake", "duplicate", json_text(r.dup_detail)))
                return KeyMatch(str(found[0]), True)
            cur.execute(_FIRST, key)
            found = cur.fetchone()
            earlier = KeyMatch(str(found[0]), False) if found is not None else None
        cur.execute(INSERT_MESSAGE + " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (*row, r.fingerprint, earlier.message_id if earlier else ""))
        flag = {"flag": REUSED, "reused_of": earlier.message_id} if earlier else {}
        detail = {**(r.detail or {}), **flag} if flag else r.detail
        cur.execute(_INSERT_EVENT, (r.id, r.now(), "intake", r.status, json_text(detail or {})))
        return earlier

    return work


def one_statement(r: Receipt) -> Work:
    """The intake write as one PostgreSQL statement: the duplicate check, the insert and its event.

    Each statement is a network round trip, and three of them would be a large part of an ACK's
    time on PostgreSQL (bench/results/2026-11-25-pipeline.md). A duplicate's count and event ride
    in the same statement.
    """
    if r.since is None:
        params = (r.id, r.channel, r.at, r.at, r.message_type, r.control_id, r.sender, r.status, "intake",
                  r.reason, r.patient_key, r.size, r.sha256, r.fingerprint, r.body, r.at, r.status,
                  json_text(r.detail or {}))

        def plain(cur: Any) -> None:
            cur.execute(_PG_RECEIVE, params)

        return plain
    named = {"id": r.id, "channel": r.channel, "at": r.at, "type": r.message_type, "control_id": r.control_id,
             "sender": r.sender, "status": r.status, "reason": r.reason, "patient_key": r.patient_key,
             "size": r.size, "sha": r.sha256, "body": r.body, "fp": r.fingerprint, "since": r.since,
             "detail": json_text(r.detail or {}), "dup_detail": json_text(r.dup_detail)}

    def work(cur: Any) -> KeyMatch | None:
        cur.execute(_PG_RECEIVE_CHECKED, named)
        found = cur.fetchone()
        return KeyMatch(str(found[0]), bool(found[1])) if found is not None else None

    return work
