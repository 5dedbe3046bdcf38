-- Messages held because a local code has no national mapping yet (channel policy `park`), one row
-- per (message, map, code): adding the mapping releases every message waiting on it.
CREATE TABLE parked (
    message_id  TEXT NOT NULL REFERENCES messages (id),
    code_map    TEXT NOT NULL,               -- the sender's local-code map (nomenclatures/<name>)
    local_code  TEXT NOT NULL,               -- a test code, not patient data
    sender      TEXT NOT NULL DEFAULT '',
    parked_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (message_id, code_map, local_code)
);
CREATE INDEX ix_parked_code ON parked (code_map, local_code);
