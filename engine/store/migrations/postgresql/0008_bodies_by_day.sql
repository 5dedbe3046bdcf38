-- Patient data apart from metadata: raw HL7 v2 (part '') and FHIR outputs (part = destination) live
-- in `bodies`, partitioned by day of the UUIDv7 message id (engine.store.partitions), so retention
-- drops a whole day at once. Bodies from before this migration move to the DEFAULT partition.
CREATE TABLE bodies (
    message_id  TEXT COLLATE "C" NOT NULL,
    part        TEXT NOT NULL,               -- '' raw, else the destination of a FHIR output
    body        BYTEA NOT NULL,              -- zlib (and AES-GCM when sealed)
    PRIMARY KEY (message_id, part)
) PARTITION BY RANGE (message_id);
CREATE TABLE bodies_default PARTITION OF bodies DEFAULT;
INSERT INTO bodies (message_id, part, body) SELECT id, '', raw FROM messages WHERE length(raw) > 0;
INSERT INTO bodies (message_id, part, body) SELECT message_id, destination, body FROM outputs WHERE body IS NOT NULL;
UPDATE messages SET raw = ''::bytea WHERE length(raw) > 0;
UPDATE outputs SET body = NULL WHERE body IS NOT NULL
