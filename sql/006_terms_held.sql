-- The billing terms of an ended month that is not closed yet, as they were
-- at its end.  "plan set" and "account override" write them for the
-- accounts they touch before they change a plan or a contract; "invoice
-- close" bills the month on them (worker/terms_held.c).  Without them a
-- change made between a month's end and its close was billed to that
-- month.  Re-runnable.

CREATE TABLE IF NOT EXISTS terms_held (
    account   BIGINT UNSIGNED NOT NULL,
    period    CHAR(7) NOT NULL,
    terms     TEXT NOT NULL,
    held_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (account, period),
    CONSTRAINT fk_terms_held_account FOREIGN KEY (account)
        REFERENCES accounts (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
