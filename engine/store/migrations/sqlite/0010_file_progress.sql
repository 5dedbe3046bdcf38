-- Files taken in row by row, exactly once: the progress is written in the same transaction as the rows,
-- so a file left half-read by a crash resumes after the last row journaled (engine.store.files).
-- size, mtime_ns and sha256 describe the file as it was claimed; sha256_end its whole content once
-- taken in, when it grew after the claim (then either hash recognises it dropped again).
ALTER TABLE files ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN mtime_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN encoding TEXT NOT NULL DEFAULT '';
-- every row before next_offset (the byte offset of line next_line) is journaled; the rejects file then
-- held rejects_bytes
ALTER TABLE files ADD COLUMN next_offset INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN next_line INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN rejects_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN sha256_end TEXT NOT NULL DEFAULT '';
CREATE INDEX files_sha256_end ON files (channel, sha256_end);
