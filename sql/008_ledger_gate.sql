-- The order of a restore of Redis against the drain's commits
-- (worker/restore.c, worker/ledger_store.c).  A restore after Redis lost
-- its data holds the row exclusively while it reads the ledger, writes
-- the counters and sets the epoch marker to the new epoch; every drain
-- transaction reads the row in share mode first.  So a drain transaction
-- committed before a restore is in what the restore read, and one that
-- sees a newer epoch than the marker had when its events were read knows
-- the restore could not count them: it adds them to the counters itself.
-- The first epoch is the time of the migration, above any marker written
-- before (the time of a restore).  Re-runnable.

CREATE TABLE IF NOT EXISTS ledger_gate (
    id     TINYINT UNSIGNED NOT NULL,
    epoch  BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO ledger_gate (id, epoch) VALUES (1, UNIX_TIMESTAMP());
