-- A key revoked through the developer API before its creation reached
-- MySQL (the admin stream's key.created taken by a worker that stopped,
-- or behind): the revocation waits here, and the key is stored revoked
-- when its key.created comes (worker/admin.c).  Before, the revocation was
-- dead-lettered as "no such key" and the key then stored active.
-- Re-runnable.

CREATE TABLE IF NOT EXISTS key_revocations (
    account     BIGINT UNSIGNED NOT NULL,
    prefix      VARCHAR(32) CHARACTER SET ascii NOT NULL,
    revoked_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (account, prefix),
    CONSTRAINT fk_key_revocations_account FOREIGN KEY (account)
        REFERENCES accounts (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
