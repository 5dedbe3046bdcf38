-- Idempotency-Key of the REST channel (engine.store.idempotency): (channel, client, key) → the first
-- answer. A request claims its key (status NULL) in a commit of its own before its message is received,
-- then completes the row with its answer; a claim older than its lease may be taken over.
CREATE TABLE idempotency (
    channel      TEXT NOT NULL,
    client       TEXT NOT NULL,              -- name of the token
    key_sha256   TEXT NOT NULL,              -- SHA-256 of the Idempotency-Key (never the key itself)
    body_sha256  TEXT NOT NULL,
    claim        TEXT NOT NULL,              -- the request holding it while in progress
    claimed_at   TIMESTAMPTZ NOT NULL,
    status       INTEGER,                    -- HTTP status of the first answer, NULL while in progress
    answer       BYTEA,                      -- its body (sealed like message bodies)
    message_id   TEXT,
    PRIMARY KEY (channel, client, key_sha256)
);
CREATE INDEX ix_idempotency_claimed ON idempotency (claimed_at);
