-- Billing audit (issue 12): an invoice stores the terms it was computed
-- with, so late events and "invoice check" use that month's terms, not
-- today's.  Re-runnable: every change is IF NOT EXISTS.

ALTER TABLE invoices
    ADD COLUMN IF NOT EXISTS terms VARCHAR(1024) NULL AFTER total_cents;

-- Seals (worker/invoice_audit.c): an invoice's digest (SHA-256 of its
-- header, terms and lines) and its link in the chain of its month's
-- invoices; the month's number of invoices and last link.
ALTER TABLE invoices
    ADD COLUMN IF NOT EXISTS digest CHAR(64) CHARACTER SET ascii NULL
        AFTER terms,
    ADD COLUMN IF NOT EXISTS chain CHAR(64) CHARACTER SET ascii NULL
        AFTER digest;

ALTER TABLE billing_periods
    ADD COLUMN IF NOT EXISTS invoices BIGINT UNSIGNED NULL,
    ADD COLUMN IF NOT EXISTS chain CHAR(64) CHARACTER SET ascii NULL;

-- a void is recorded, with its reason ("invoice void")
CREATE TABLE IF NOT EXISTS invoice_voids (
    invoice    BIGINT UNSIGNED NOT NULL,
    reason     VARCHAR(255) NOT NULL,
    voided_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (invoice),
    CONSTRAINT invoice_voids_invoice_fk FOREIGN KEY (invoice)
        REFERENCES invoices (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A sealed invoice and its lines cannot change or go away; the one change
-- allowed is its status from issued to void.  (A database administrator
-- can drop these triggers: "invoice check" still sees the change.)
CREATE TRIGGER IF NOT EXISTS invoices_sealed_update BEFORE UPDATE
    ON invoices FOR EACH ROW
    IF OLD.digest IS NOT NULL AND NOT (
           OLD.status = 'issued' AND NEW.status = 'void'
           AND NEW.id = OLD.id AND NEW.account = OLD.account
           AND NEW.period = OLD.period AND NEW.plan = OLD.plan
           AND NEW.calls = OLD.calls
           AND NEW.included_calls = OLD.included_calls
           AND NEW.subtotal_cents = OLD.subtotal_cents
           AND NEW.total_cents = OLD.total_cents
           AND NEW.issued_at = OLD.issued_at
           AND NEW.terms <=> OLD.terms AND NEW.digest <=> OLD.digest
           AND NEW.chain <=> OLD.chain)
    THEN
        SIGNAL SQLSTATE '45000'
            SET MESSAGE_TEXT = 'an issued invoice cannot change';
    END IF;

CREATE TRIGGER IF NOT EXISTS invoices_sealed_delete BEFORE DELETE
    ON invoices FOR EACH ROW
    IF OLD.digest IS NOT NULL THEN
        SIGNAL SQLSTATE '45000'
            SET MESSAGE_TEXT = 'an issued invoice cannot be deleted';
    END IF;

CREATE TRIGGER IF NOT EXISTS invoice_lines_sealed_insert BEFORE INSERT
    ON invoice_lines FOR EACH ROW
    IF (SELECT digest FROM invoices WHERE id = NEW.invoice) IS NOT NULL THEN
        SIGNAL SQLSTATE '45000'
            SET MESSAGE_TEXT = 'an issued invoice cannot change';
    END IF;

CREATE TRIGGER IF NOT EXISTS invoice_lines_sealed_update BEFORE UPDATE
    ON invoice_lines FOR EACH ROW
    IF (SELECT digest FROM invoices WHERE id = OLD.invoice) IS NOT NULL THEN
        SIGNAL SQLSTATE '45000'
            SET MESSAGE_TEXT = 'an issued invoice cannot change';
    END IF;

CREATE TRIGGER IF NOT EXISTS invoice_lines_sealed_delete BEFORE DELETE
    ON invoice_lines FOR EACH ROW
    IF (SELECT digest FROM invoices WHERE id = OLD.invoice) IS NOT NULL THEN
        SIGNAL SQLSTATE '45000'
            SET MESSAGE_TEXT = 'an issued invoice cannot be deleted';
    END IF;

-- close finds an account's late events (invoice IS NULL, before the month)
-- without scanning its whole history
CREATE INDEX IF NOT EXISTS usage_events_account_invoice_ts
    ON usage_events (account, invoice, ts);
