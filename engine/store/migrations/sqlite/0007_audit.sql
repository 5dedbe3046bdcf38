-- Who saw or did what: every view of a message's content, every replay, every export, kept apart
-- from the messages (its own retention) and exportable as FHIR AuditEvent.
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,               -- the user (console login, or the OS user of the CLI)
    action      TEXT NOT NULL,               -- view-raw | view-fhir | replay | export | ...
    message_id  TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL DEFAULT '',    -- where from: console client address, or cli@host
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ix_audit_at ON audit (at);
CREATE INDEX ix_audit_message ON audit (message_id, at);
