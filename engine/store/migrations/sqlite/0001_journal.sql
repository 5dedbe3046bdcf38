-- The journal: every message, what happened to it, and what left for each destination.
CREATE TABLE messages (
    id            TEXT PRIMARY KEY,           -- UUIDv7, time-ordered
    channel       TEXT NOT NULL,
    received_at   TEXT NOT NULL,              -- ISO 8601 UTC
    updated_at    TEXT NOT NULL,
    message_type  TEXT NOT NULL DEFAULT '',   -- e.g. ADT^A01
    control_id    TEXT NOT NULL DEFAULT '',   -- MSH-10
    sender        TEXT NOT NULL DEFAULT '',   -- MSH-4
    status        TEXT NOT NULL,              -- received | transformed | delivered | failed | filtered
    stage         TEXT NOT NULL DEFAULT 'intake',
    reason        TEXT NOT NULL DEFAULT '',
    patient_key   TEXT NOT NULL DEFAULT '',   -- keyed hash, never the identifier
    size          INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    raw           BLOB NOT NULL               -- zlib of the exact bytes received
);
CREATE INDEX ix_messages_channel_time ON messages (channel, received_at);
CREATE INDEX ix_messages_control_id ON messages (control_id);
CREATE INDEX ix_messages_status_time ON messages (status, received_at);
CREATE INDEX ix_messages_patient_time ON messages (patient_key, received_at);
CREATE INDEX ix_messages_duplicate_key ON messages (channel, sender, control_id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT NOT NULL,
    at          TEXT NOT NULL,
    stage       TEXT NOT NULL,               -- intake | transform | deliver | recovery
    status      TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}'   -- JSON, ids and reasons only
);
CREATE INDEX ix_events_message ON events (message_id, id);
CREATE INDEX ix_events_at ON events (at);

CREATE TABLE outputs (
    message_id   TEXT NOT NULL,
    destination  TEXT NOT NULL,
    status       TEXT NOT NULL,              -- pending | writing | delivered | failed
    updated_at   TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    location     TEXT NOT NULL DEFAULT '',   -- where it went (file:offset, URL, …)
    response     TEXT NOT NULL DEFAULT '',
    body         BLOB,                       -- zlib of the FHIR Bundle
    PRIMARY KEY (message_id, destination)
);
CREATE INDEX ix_outputs_destination_status ON outputs (destination, status);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
