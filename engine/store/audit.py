"""The audit trail: who viewed a message's content, who replayed or exported what, from where.

A record is committed *before* the content is shown, so nobody reads a patient's data without it
being recorded. Exported as FHIR R4 AuditEvent (the IHE BALP shape, DICOM event types), one per
record, with deterministic ids so an export run twice gives the same resources.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import orjson

from engine.ids import namespace, resource_id
from engine.store.database import Database
from engine.store.dialect import json_text

__all__ = ["Audit", "audit_event"]

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_TYPES = {  # action → (DICOM event type, display, FHIR AuditEvent.action)
    "view": ("110110", "Patient Record", "R"),       # the console's message page: raw and FHIR
    "view-raw": ("110110", "Patient Record", "R"),
    "view-fhir": ("110110", "Patient Record", "R"),
    "replay": ("110100", "Application Activity", "E"),
    "export": ("110106", "Export", "R"),
    "claim-close": ("110100", "Application Activity", "E"),    # an operator closes a claim (engine.claims)
    "claim-release": ("110100", "Application Activity", "E"),  # an operator has a parked claim checked again
}


class Audit:
    """The `audit` table: owns the record of who viewed, replayed or exported what, and its export
    as AuditEvent. Guarantees that `record` returns only once the record is durable."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, actor: str, action: str, message_ids: list[str] | tuple[str, ...] = ("",), source: str = "",
               detail: dict[str, Any] | None = None) -> None:
        """Record an action (one row per message); returns once it is durable."""
        if action not in _TYPES:
            raise ValueError(f"unknown audit action {action!r}")
        at = self.db.now()
        sql = self.db.sql("INSERT INTO audit (at, actor, action, message_id, source, detail) VALUES (?,?,?,?,?,?)")
        body = json_text(detail or {})
        rows = [(at, actor, action, mid, source, body) for mid in message_ids]
        self.db.commit(lambda cur: cur.executemany(sql, rows))

    def records(self, *, message_id: str | None = None, since: datetime | None = None,
                limit: int = 100_000) -> list[dict[str, Any]]:
        """The records (of a message, since a time), oldest first."""
        where: list[str] = []
        params: list[Any] = []
        if message_id:
            where.append("message_id = ?")
            params.append(message_id)
        if since:
            where.append("at >= ?")
            params.append(self.db.dialect.ts(since))
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.query(f"SELECT id, at, actor, action, message_id, source, detail FROM audit{clause}"
                             f" ORDER BY id LIMIT {int(limit)}", tuple(params))
        return [{"id": int(r[0]), "at": self.db.dialect.from_ts(r[1]), "actor": r[2], "action": r[3],
                 "message_id": r[4], "source": r[5],
                 "detail": r[6] if isinstance(r[6], dict) else orjson.loads(r[6])} for r in rows]

    def events(self, base: str, **filters: Any) -> Iterator[dict[str, Any]]:
        """The records as FHIR AuditEvent resources (`filters` as for `records`)."""
        ns = namespace(base)
        for record in self.records(**filters):
            yield audit_event(record, base, ns)


def audit_event(record: dict[str, Any], base: str, ns: Any) -> dict[str, Any]:
    code, display, action = _TYPES[record["action"]]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": resource_id(ns, "AuditEvent", str(record["id"]), record["at"].isoformat()),
        "type": {"system": _DCM, "code": code, "display": display},
        "subtype": [{"system": f"{base}/CodeSystem/wasla-audit-action", "code": record["action"]}],
        "action": action,
        "recorded": record["at"].isoformat(),
        "outcome": "0",
        "agent": [{"who": {"identifier": {"system": f"{base}/sid/wasla-user", "value": record["actor"]}},
                   "requestor": True}],
        "source": {"observer": {"display": "Wasla"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                             "display": "Application Server"}]},
    }
    if record["source"]:
        is_ip = record["source"].replace(".", "").replace(":", "").isalnum() and any(
            c.isdigit() for c in record["source"]) and "@" not in record["source"]
        event["agent"][0]["network"] = {"address": record["source"], "type": "2" if is_ip else "1"}
    objects = [(f"{base}/sid/wasla-message", record["message_id"]),
               (f"{base}/sid/ma/claim", str((record["detail"] or {}).get("claim", "")))]  # an operator's claim
    entities = [{"what": {"identifier": {"system": system, "value": value}},
                 "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                          "code": "2", "display": "System Object"}} for system, value in objects if value]
    if entities:
        event["entity"] = entities
    return event
