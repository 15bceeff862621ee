-- aihub schema, version 1: the ledger.  Applied by `aihub-worker migrate`.
-- Re-runnable (IF NOT EXISTS, INSERT IGNORE on unique keys): a run that
-- failed halfway is completed by the next one.
-- All times are UTC (the worker sets time_zone = '+00:00' on connect).
-- Money is integers only: cents for invoices, micro-dollars for per-event
-- cost and for prices (micro-dollars per million tokens).

CREATE TABLE IF NOT EXISTS plans (
    id              INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name            VARCHAR(32) NOT NULL,
    base_fee_cents  BIGINT NOT NULL DEFAULT 0,
    included_calls  BIGINT NOT NULL DEFAULT 0,
    hard_quota      TINYINT(1) NOT NULL DEFAULT 1,
    overage         TINYINT(1) NOT NULL DEFAULT 0,
    rpm             INT UNSIGNED NOT NULL DEFAULT 60,
    tpm             INT UNSIGNED NOT NULL DEFAULT 100000,
    max_tokens      INT UNSIGNED NOT NULL DEFAULT 0,
    model_tier      ENUM('basic','all') NOT NULL DEFAULT 'basic',
    priority        TINYINT NOT NULL DEFAULT 0,
    PRIMARY KEY (id),
    UNIQUE KEY plans_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO plans (name, base_fee_cents, included_calls, hard_quota,
                          overage, rpm, tpm, max_tokens, model_tier, priority)
VALUES ('free',          0,   1000, 1, 0,   60,   100000, 0, 'basic', 0),
       ('pro',        1900,  10000, 0, 1,  600,  1000000, 0, 'all',   1),
       ('enterprise',    0, 100000, 0, 1, 3000, 10000000, 0, 'all',   2);

CREATE TABLE IF NOT EXISTS accounts (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name        VARCHAR(64) NOT NULL,
    status      ENUM('active','suspended') NOT NULL DEFAULT 'active',
    created_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY accounts_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- one open row (ended_at NULL) per account: the plan in force
CREATE TABLE IF NOT EXISTS subscriptions (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    account     BIGINT UNSIGNED NOT NULL,
    plan        INT UNSIGNED NOT NULL,
    started_at  DATETIME NOT NULL,
    ended_at    DATETIME NULL,
    PRIMARY KEY (id),
    KEY subscriptions_account (account, started_at),
    CONSTRAINT subscriptions_account_fk FOREIGN KEY (account)
        REFERENCES accounts (id),
    CONSTRAINT subscriptions_plan_fk FOREIGN KEY (plan) REFERENCES plans (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- enterprise contracts and caps; NULL = the plan's value
CREATE TABLE IF NOT EXISTS account_overrides (
    account           BIGINT UNSIGNED NOT NULL,
    included_calls    BIGINT NULL,
    rpm               INT UNSIGNED NULL,
    tpm               INT UNSIGNED NULL,
    models            TEXT NULL,
    base_fee_cents    BIGINT NULL,
    spend_cap_micros  BIGINT NULL,
    max_tokens        INT UNSIGNED NULL,
    overage           TINYINT(1) NULL,
    PRIMARY KEY (account),
    CONSTRAINT account_overrides_fk FOREIGN KEY (account)
        REFERENCES accounts (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS api_keys (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    account     BIGINT UNSIGNED NOT NULL,
    key_hash    CHAR(64) CHARACTER SET ascii NOT NULL,
    prefix      VARCHAR(32) CHARACTER SET ascii NOT NULL,
    label       VARCHAR(255) NOT NULL DEFAULT '',
    scopes      VARCHAR(64) NOT NULL DEFAULT 'chat',
    status      ENUM('active','revoked') NOT NULL DEFAULT 'active',
    expires_at  DATETIME NULL,
    created_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    revoked_at  DATETIME NULL,
    source      ENUM('cli','api') NOT NULL DEFAULT 'cli',
    PRIMARY KEY (id),
    UNIQUE KEY api_keys_hash (key_hash),
    UNIQUE KEY api_keys_prefix (prefix),
    KEY api_keys_account (account),
    CONSTRAINT api_keys_account_fk FOREIGN KEY (account)
        REFERENCES accounts (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- the catalog; prices are the current ones, model_prices keeps the history
CREATE TABLE IF NOT EXISTS models (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    public_id         VARCHAR(128) NOT NULL,
    provider          VARCHAR(32) NOT NULL,
    upstream_id       VARCHAR(128) NOT NULL,
    tier              ENUM('basic','premium') NOT NULL DEFAULT 'basic',
    price_in_micros   BIGINT NOT NULL DEFAULT 0,
    price_out_micros  BIGINT NOT NULL DEFAULT 0,
    enabled           TINYINT(1) NOT NULL DEFAULT 1,
    updated_at        DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
                          ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY models_public_id (public_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS model_prices (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    model             VARCHAR(128) NOT NULL,
    price_in_micros   BIGINT NOT NULL,
    price_out_micros  BIGINT NOT NULL,
    valid_from        DATETIME(3) NOT NULL,
    source            VARCHAR(64) NOT NULL DEFAULT 'seed',
    PRIMARY KEY (id),
    UNIQUE KEY model_prices_model_from (model, valid_from)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO models (public_id, provider, upstream_id, tier,
                           price_in_micros, price_out_micros)
VALUES
    ('openai/gpt-4o-mini', 'openrouter', 'openai/gpt-4o-mini', 'basic',
     150000, 600000),
    ('google/gemini-2.0-flash', 'gemini', 'gemini-2.0-flash', 'basic',
     100000, 400000),
    ('meta-llama/llama-3.1-8b-instruct', 'openrouter',
     'meta-llama/llama-3.1-8b-instruct', 'basic', 20000, 50000),
    ('x-ai/grok-3-mini', 'openrouter', 'x-ai/grok-3-mini', 'basic',
     300000, 500000),
    ('openai/gpt-4o', 'openrouter', 'openai/gpt-4o', 'premium',
     2500000, 10000000),
    ('anthropic/claude-3.5-sonnet', 'openrouter',
     'anthropic/claude-3.5-sonnet', 'premium', 3000000, 15000000),
    ('google/gemini-2.5-pro', 'gemini', 'gemini-2.5-pro', 'premium',
     1250000, 10000000),
    ('mock-basic', 'mock', 'mock-basic', 'basic', 150000, 600000),
    ('mock-premium', 'mock', 'mock-premium', 'premium', 2500000, 10000000);

INSERT IGNORE INTO model_prices (model, price_in_micros,
                                 price_out_micros, valid_from, source)
SELECT public_id, price_in_micros, price_out_micros,
       '2000-01-01 00:00:00.000', 'seed'
FROM models;

-- one row per call, written only by the drain; event_id makes it idempotent;
-- drain_batch tells the rows a drain transaction inserted from duplicates
CREATE TABLE IF NOT EXISTS usage_events (
    id                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_id           CHAR(32) CHARACTER SET ascii NOT NULL,
    ts                 DATETIME(3) NOT NULL,
    account            BIGINT UNSIGNED NOT NULL,
    key_prefix         VARCHAR(32) NOT NULL,
    plan               VARCHAR(32) NOT NULL,
    model              VARCHAR(128) NOT NULL,
    provider           VARCHAR(32) NOT NULL,
    prompt_tokens      BIGINT UNSIGNED NOT NULL,
    completion_tokens  BIGINT UNSIGNED NOT NULL,
    total_tokens       BIGINT UNSIGNED NOT NULL,
    cost_micros        BIGINT NOT NULL,
    status             SMALLINT UNSIGNED NOT NULL,
    streamed           TINYINT(1) NOT NULL,
    aborted            TINYINT(1) NOT NULL,
    estimated          TINYINT(1) NOT NULL,
    latency_ms         INT UNSIGNED NOT NULL,
    node               VARCHAR(255) NOT NULL,
    stored_at          DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    drain_batch        BIGINT UNSIGNED NOT NULL DEFAULT 0,
    invoice            BIGINT UNSIGNED NULL,
    PRIMARY KEY (id),
    UNIQUE KEY usage_events_event_id (event_id),
    KEY usage_events_account_ts (account, ts),
    KEY usage_events_ts (ts)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- daily rollups, updated in the drain's transaction for new rows only
CREATE TABLE IF NOT EXISTS usage_daily (
    account            BIGINT UNSIGNED NOT NULL,
    day                DATE NOT NULL,
    model              VARCHAR(128) NOT NULL,
    requests           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    calls              BIGINT UNSIGNED NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT UNSIGNED NOT NULL DEFAULT 0,
    completion_tokens  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    total_tokens       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    cost_micros        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account, day, model)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS invoices (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    account         BIGINT UNSIGNED NOT NULL,
    period          CHAR(7) NOT NULL,
    plan            VARCHAR(32) NOT NULL,
    status          ENUM('issued','void') NOT NULL DEFAULT 'issued',
    calls           BIGINT UNSIGNED NOT NULL DEFAULT 0,
    included_calls  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    subtotal_cents  BIGINT NOT NULL DEFAULT 0,
    total_cents     BIGINT NOT NULL DEFAULT 0,
    issued_at       DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY invoices_account_period (account, period),
    CONSTRAINT invoices_account_fk FOREIGN KEY (account)
        REFERENCES accounts (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS invoice_lines (
    id                 BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    invoice            BIGINT UNSIGNED NOT NULL,
    kind               ENUM('base','overage','adjustment','usage') NOT NULL,
    model              VARCHAR(128) NOT NULL DEFAULT '',
    price_in_micros    BIGINT NOT NULL DEFAULT 0,
    price_out_micros   BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT UNSIGNED NOT NULL DEFAULT 0,
    completion_tokens  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    calls              BIGINT UNSIGNED NOT NULL DEFAULT 0,
    amount_cents       BIGINT NOT NULL DEFAULT 0,
    ref_period         CHAR(7) NOT NULL DEFAULT '',
    description        VARCHAR(255) NOT NULL DEFAULT '',
    PRIMARY KEY (id),
    KEY invoice_lines_invoice (invoice),
    CONSTRAINT invoice_lines_invoice_fk FOREIGN KEY (invoice)
        REFERENCES invoices (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- a period is closed once; closing again is a no-op
CREATE TABLE IF NOT EXISTS billing_periods (
    period     CHAR(7) NOT NULL,
    closed_at  DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (period)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    invoice          BIGINT UNSIGNED NOT NULL,
    url              VARCHAR(1024) NOT NULL,
    idempotency_key  VARCHAR(64) NOT NULL,
    attempt          INT UNSIGNED NOT NULL,
    http_status      INT NOT NULL DEFAULT 0,
    error            VARCHAR(255) NOT NULL DEFAULT '',
    delivered        TINYINT(1) NOT NULL DEFAULT 0,
    created_at       DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    KEY webhook_deliveries_invoice (invoice)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
