-- Duplicates by content (issue 23): the same channel, MSH-4 and MSH-10 is a duplicate only with the
-- same content. `fingerprint` is the hash intake computes once (segment terminators normalised,
-- MSH-7 blanked, engine.fingerprint); rows from before it have '' and are compared by sha256.
-- `reused_of` names the earlier message that had the key when this one came with other content
-- (flag CONTROL_ID_REUSED), '' otherwise. `duplicates` counts the true duplicates answered AA and
-- dropped as copies of this message.
ALTER TABLE messages ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN reused_of TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
-- The same-content probe is one index range even for a sender whose control id never changes.
CREATE INDEX ix_messages_content_key ON messages (channel, control_id, sender, fingerprint, received_at);
-- Search filters (wasla messages search --reused / --duplicated, the console): small partial indexes.
CREATE INDEX ix_messages_reused_time ON messages (received_at) WHERE reused_of <> '';
CREATE INDEX ix_messages_duplicated_time ON messages (received_at) WHERE duplicates > 0;
