-- The events a drain transaction stored after a restore of Redis that
-- could not count them (sql/008_ledger_gate.sql): written in the same
-- transaction as the events, when its COMMIT sees a newer epoch than the
-- marker had when they were read, and deleted once they are added to the
-- period counters (worker/restore.c, aw_restore_additions).  Kept in the
-- ledger rather than in the worker's memory, a worker that dies (or loses
-- Redis) before it adds them leaves them for itself or another worker to
-- add: once (a guard in Redis per batch and account), and only while the
-- marker still holds that epoch (a later restore read them in the
-- ledger).  Re-runnable.

CREATE TABLE IF NOT EXISTS ledger_additions (
    batch     BIGINT UNSIGNED NOT NULL,
    epoch     BIGINT UNSIGNED NOT NULL,
    event_id  CHAR(32) CHARACTER SET ascii NOT NULL,
    PRIMARY KEY (batch, event_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
