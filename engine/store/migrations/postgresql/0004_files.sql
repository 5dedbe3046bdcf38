-- Files taken in by file channels (CSV drop): a file whose bytes were taken in before is recognised
-- by its SHA-256 and not processed twice, whatever its name.
CREATE TABLE files (
    sha256       TEXT NOT NULL,
    channel      TEXT NOT NULL,
    name         TEXT NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL,
    rows_read    INTEGER NOT NULL DEFAULT 0,
    messages     INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,              -- processing | done | failed
    PRIMARY KEY (channel, sha256)
);
