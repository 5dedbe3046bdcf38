-- Inbound connections (MLLP, later REST/TLS sessions): who connected, when, how it ended.
CREATE TABLE connections (
    id          TEXT PRIMARY KEY,            -- UUIDv7
    channel     TEXT NOT NULL,
    peer        TEXT NOT NULL DEFAULT '',    -- address:port
    client      TEXT NOT NULL DEFAULT '',    -- TLS client certificate subject CN
    opened_at   TIMESTAMPTZ NOT NULL,
    closed_at   TIMESTAMPTZ,
    messages    INTEGER NOT NULL DEFAULT 0,
    outcome     TEXT NOT NULL DEFAULT 'open' -- open | closed | refused | idle_timeout | too_large | error
);
CREATE INDEX ix_connections_channel_time ON connections (channel, opened_at);

-- The duplicate check (channel, MSH-4, MSH-10 within a window) must be one index range, not a
-- walk over every message of the channel in the window: received_at joins the key.
DROP INDEX ix_messages_duplicate_key;
CREATE INDEX ix_messages_duplicate_key ON messages (channel, control_id, sender, received_at);
