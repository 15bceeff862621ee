-- A plan may name its models (enterprise offers "custom model
-- configuration" as a plan, not only per account): NULL follows
-- model_tier, else the key records' format, a comma list of model ids and
-- "tier:<tier>" entries, or "*".  An account's override still wins.
-- Re-runnable.

ALTER TABLE plans
    ADD COLUMN IF NOT EXISTS models TEXT NULL AFTER model_tier;
