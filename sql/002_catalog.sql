-- The catalog learns what a model is (chat or embedding), which API its
-- provider speaks for it (chat completions, or the Responses API too), when
-- it was published (GET /v1/models answers it as "created") and which
-- routes may serve a call when it fails (a comma list of public ids, tried
-- in order).  Re-runnable: every change is IF NOT EXISTS or idempotent.

ALTER TABLE models
    ADD COLUMN IF NOT EXISTS kind ENUM('chat','embedding') NOT NULL
        DEFAULT 'chat' AFTER tier,
    ADD COLUMN IF NOT EXISTS api ENUM('chat','responses') NOT NULL
        DEFAULT 'chat' AFTER kind,
    ADD COLUMN IF NOT EXISTS created_at DATETIME NOT NULL
        DEFAULT '2024-01-01 00:00:00' AFTER api,
    ADD COLUMN IF NOT EXISTS fallbacks VARCHAR(1024) NOT NULL DEFAULT ''
        AFTER created_at;

-- publication dates of the seeded models (the providers' announcements)
UPDATE models SET created_at = '2024-07-18 00:00:00'
    WHERE public_id = 'openai/gpt-4o-mini';
UPDATE models SET created_at = '2024-05-13 00:00:00'
    WHERE public_id = 'openai/gpt-4o';
UPDATE models SET created_at = '2025-02-05 00:00:00'
    WHERE public_id = 'google/gemini-2.0-flash';
UPDATE models SET created_at = '2024-07-23 00:00:00'
    WHERE public_id = 'meta-llama/llama-3.1-8b-instruct';
UPDATE models SET created_at = '2025-02-17 00:00:00'
    WHERE public_id = 'x-ai/grok-3-mini';
UPDATE models SET created_at = '2024-06-20 00:00:00'
    WHERE public_id = 'anthropic/claude-3.5-sonnet';
UPDATE models SET created_at = '2025-03-25 00:00:00'
    WHERE public_id = 'google/gemini-2.5-pro';
UPDATE models SET created_at = '2025-01-01 00:00:00', api = 'responses'
    WHERE public_id IN ('mock-basic', 'mock-premium');

INSERT IGNORE INTO models (public_id, provider, upstream_id, tier, kind,
                           api, created_at, price_in_micros,
                           price_out_micros)
VALUES
    ('openai/text-embedding-3-small', 'openrouter',
     'openai/text-embedding-3-small', 'basic', 'embedding', 'chat',
     '2024-01-25 00:00:00', 20000, 0),
    ('mock-embed', 'mock', 'mock-embed', 'basic', 'embedding', 'chat',
     '2025-01-01 00:00:00', 20000, 0);

INSERT IGNORE INTO model_prices (model, price_in_micros, price_out_micros,
                                 valid_from, source)
SELECT public_id, price_in_micros, price_out_micros,
       '2000-01-01 00:00:00.000', 'seed'
FROM models
WHERE public_id IN ('openai/text-embedding-3-small', 'mock-embed');
