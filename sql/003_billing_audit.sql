-- Billing audit (issue 12): an invoice stores the terms it was computed
-- with, so late events and "invoice check" use that month's terms, not
-- today's.  Re-runnable: every change is IF NOT EXISTS.

ALTER TABLE invoices
    ADD COLUMN IF NOT EXISTS terms VARCHAR(1024) NULL AFTER total_cents;
