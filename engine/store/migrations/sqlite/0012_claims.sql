-- Claims assembled from billing feeds (engine.claims): one row per claim (an account or visit of a
-- claims destination), the business keys that lead to it, and the resources it is built from.
CREATE TABLE claims (
    id            TEXT PRIMARY KEY,          -- the FHIR Claim id (UUIDv5 of destination and key)
    destination   TEXT NOT NULL,             -- the claims destination that assembles it
    claim_key     TEXT NOT NULL,             -- its first business key (kind:system|value), not shown
    status        TEXT NOT NULL,             -- open, closed, parked, submitted, accepted, rejected, empty, cancelled
    version       INTEGER NOT NULL DEFAULT 0,-- versions sent (a correction after submission is the next)
    insurer       TEXT NOT NULL DEFAULT '',
    total         TEXT NOT NULL DEFAULT '',  -- decimal text, MAD
    items         INTEGER NOT NULL DEFAULT 0,
    reasons       TEXT NOT NULL DEFAULT '[]',-- why it is parked: [{code, where, message, fix}], no patient data
    close_reason  TEXT NOT NULL DEFAULT '',  -- the event that closed it (ADT^A03, BAR^P12, quiet, operator)
    requested     TEXT NOT NULL DEFAULT '',  -- an operator's request (close, release), done by the engine
    content_sha   TEXT NOT NULL DEFAULT '',  -- SHA-256 of the last Claim sent
    message_id    TEXT NOT NULL DEFAULT '',  -- the journal message of the last Claim sent
    response_id   TEXT NOT NULL DEFAULT '',  -- the journal message of the ClaimResponse
    opened_at     TEXT NOT NULL,
    updated_at    TEXT NOT NULL,              -- last resource or state change
    closed_at     TEXT,
    submitted_at  TEXT
);
CREATE INDEX ix_claims_status ON claims (destination, status);
CREATE INDEX ix_claims_open ON claims (status, updated_at);
CREATE TABLE claim_keys (
    claim_key     TEXT NOT NULL,             -- kind:system|value of a visit, account or FSE number
    destination   TEXT NOT NULL,
    claim_id      TEXT NOT NULL REFERENCES claims (id),
    PRIMARY KEY (destination, claim_key)
);
CREATE TABLE claim_parts (
    claim_id      TEXT NOT NULL REFERENCES claims (id),
    part          TEXT NOT NULL,             -- ResourceType/id of a resource the claim is built from
    received_at   TEXT NOT NULL,              -- receipt of the message it came in (a later one wins)
    message_id    TEXT NOT NULL,
    entry         BLOB NOT NULL,             -- the Bundle entry (resource and request), sealed like bodies
    PRIMARY KEY (claim_id, part)
);
