-- SQLite keeps bodies inline (messages.raw, outputs.body): retention erases them row by row and
-- gives the pages back with incremental vacuum. Only PostgreSQL partitions them by day.
SELECT 1
