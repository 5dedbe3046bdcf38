-- Per-patient order at a destination: while a patient's message waits for a retry (or sits in the
-- dead letters, policy `block`), that patient's later messages for the destination wait behind it
-- (outputs.status = waiting), the lane names the message at its head.
CREATE TABLE lanes (
    destination  TEXT NOT NULL,
    patient_key  TEXT NOT NULL,               -- keyed hash, never the identifier
    message_id   TEXT NOT NULL,               -- the head, the message the others wait for
    since        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (destination, patient_key)
);
-- Replays asked for by an operator (CLI or console), taken by whichever engine process runs the
-- stage: `transform` re-runs the mapping of today and `deliver` re-sends the journaled output.
CREATE TABLE replays (
    id            BIGSERIAL PRIMARY KEY,
    message_id    TEXT NOT NULL,
    mode          TEXT NOT NULL,               -- transform | deliver
    destination   TEXT NOT NULL DEFAULT '',    -- deliver: the one destination, empty = all of the message outputs
    requested_at  TIMESTAMPTZ NOT NULL,
    requested_by  TEXT NOT NULL DEFAULT ''
);
CREATE INDEX ix_replays_mode ON replays (mode, id);
CREATE INDEX ix_outputs_status_destination ON outputs (status, destination, message_id);
