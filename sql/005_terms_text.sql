-- An invoice's terms name the overage rule of every plan (up to 256 of
-- them, 32 characters a name): more than VARCHAR(1024) holds.  Re-runnable.

ALTER TABLE invoices MODIFY COLUMN terms TEXT NULL;
