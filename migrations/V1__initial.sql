-- qb-backfill, initial schema.
-- Forward-only: once applied anywhere, never edit this file; add V2__... instead.
--
-- raw:      one table per QBO entity, the records exactly as QBO returned them (SPEC §6).
-- backfill: the run ledger (triggers, runs, windows) and the OAuth token store (SPEC §3, §5).

CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS backfill;

-- ---------------------------------------------------------------------------------------------
-- raw layer
-- ---------------------------------------------------------------------------------------------

CREATE TABLE raw.qb_customers (
    realm_id                 TEXT        NOT NULL,
    id                       TEXT        NOT NULL,
    payload                  JSONB       NOT NULL,
    ingested_at_utc          TIMESTAMPTZ NOT NULL,
    extract_window_start_utc TIMESTAMPTZ NOT NULL,
    extract_window_end_utc   TIMESTAMPTZ NOT NULL,
    page_number              INT         NOT NULL,
    page_size                INT         NOT NULL,
    request_payload          TEXT        NOT NULL,
    PRIMARY KEY (realm_id, id)
);
COMMENT ON TABLE raw.qb_customers IS 'QBO Customer records as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_items (
    realm_id                 TEXT        NOT NULL,
    id                       TEXT        NOT NULL,
    payload                  JSONB       NOT NULL,
    ingested_at_utc          TIMESTAMPTZ NOT NULL,
    extract_window_start_utc TIMESTAMPTZ NOT NULL,
    extract_window_end_utc   TIMESTAMPTZ NOT NULL,
    page_number              INT         NOT NULL,
    page_size                INT         NOT NULL,
    request_payload          TEXT        NOT NULL,
    PRIMARY KEY (realm_id, id)
);
COMMENT ON TABLE raw.qb_items IS 'QBO Item records as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_invoices (
    realm_id                 TEXT        NOT NULL,
    id                       TEXT        NOT NULL,
    payload                  JSONB       NOT NULL,
    ingested_at_utc          TIMESTAMPTZ NOT NULL,
    extract_window_start_utc TIMESTAMPTZ NOT NULL,
    extract_window_end_utc   TIMESTAMPTZ NOT NULL,
    page_number              INT         NOT NULL,
    page_size                INT         NOT NULL,
    request_payload          TEXT        NOT NULL,
    PRIMARY KEY (realm_id, id)
);
COMMENT ON TABLE raw.qb_invoices IS 'QBO Invoice records as returned by the API, one row per (realm_id, id).';

-- ---------------------------------------------------------------------------------------------
-- run ledger
-- ---------------------------------------------------------------------------------------------

-- One-time triggers: "run this pipeline for this company over this range, once".
-- Keyed per pipeline and realm, so one name (e.g. "initial-load") can serve every pipeline.
CREATE TABLE backfill.triggers (
    pipeline     TEXT        NOT NULL,
    realm_id     TEXT        NOT NULL,
    name         TEXT        NOT NULL CHECK (name <> ''),
    range_start  TIMESTAMPTZ NOT NULL,
    range_end    TIMESTAMPTZ NOT NULL,
    status       TEXT        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'completed', 'disabled')),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    last_run_id  BIGINT,
    PRIMARY KEY (pipeline, realm_id, name),
    CHECK (range_end > range_start),
    CHECK (status <> 'completed' OR completed_at IS NOT NULL)
);

-- One row per invocation of a pipeline.
CREATE TABLE backfill.runs (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline         TEXT        NOT NULL,
    realm_id         TEXT        NOT NULL,
    range_start      TIMESTAMPTZ NOT NULL,
    range_end        TIMESTAMPTZ NOT NULL,
    window_field     TEXT        NOT NULL,
    trigger_name     TEXT,
    status           TEXT        NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'succeeded', 'partial', 'failed', 'interrupted')),
    windows_planned  INT         NOT NULL DEFAULT 0 CHECK (windows_planned >= 0),
    windows_done     INT         NOT NULL DEFAULT 0 CHECK (windows_done >= 0),
    windows_skipped  INT         NOT NULL DEFAULT 0 CHECK (windows_skipped >= 0),
    windows_failed   INT         NOT NULL DEFAULT 0 CHECK (windows_failed >= 0),
    windows_mismatch INT         NOT NULL DEFAULT 0 CHECK (windows_mismatch >= 0),
    rows             BIGINT      NOT NULL DEFAULT 0 CHECK (rows >= 0),
    inserted         BIGINT      NOT NULL DEFAULT 0 CHECK (inserted >= 0),
    updated          BIGINT      NOT NULL DEFAULT 0 CHECK (updated >= 0),
    unchanged        BIGINT      NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    error            TEXT,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    CHECK (range_end > range_start),
    CHECK ((status = 'running') = (finished_at IS NULL)),
    FOREIGN KEY (pipeline, realm_id, trigger_name)
        REFERENCES backfill.triggers (pipeline, realm_id, name)
);
CREATE INDEX runs_pipeline_realm_started_idx ON backfill.runs (pipeline, realm_id, started_at DESC);
CREATE INDEX runs_trigger_idx ON backfill.runs (pipeline, realm_id, trigger_name)
    WHERE trigger_name IS NOT NULL;

ALTER TABLE backfill.triggers
    ADD CONSTRAINT triggers_last_run_id_fkey
    FOREIGN KEY (last_run_id) REFERENCES backfill.runs (id) ON DELETE SET NULL;

-- One row per (pipeline, realm, window field, window): the unit of progress and of resume.
CREATE TABLE backfill.windows (
    id           BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline     TEXT        NOT NULL,
    realm_id     TEXT        NOT NULL,
    window_field TEXT        NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end   TIMESTAMPTZ NOT NULL,
    status       TEXT        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed', 'mismatch')),
    attempts     INT         NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    pages        INT         NOT NULL DEFAULT 0 CHECK (pages >= 0),
    rows         BIGINT      NOT NULL DEFAULT 0 CHECK (rows >= 0),
    inserted     BIGINT      NOT NULL DEFAULT 0 CHECK (inserted >= 0),
    updated      BIGINT      NOT NULL DEFAULT 0 CHECK (updated >= 0),
    unchanged    BIGINT      NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    source_count BIGINT      CHECK (source_count >= 0),
    duration_ms  BIGINT      CHECK (duration_ms >= 0),
    last_error   TEXT,
    run_id       BIGINT      REFERENCES backfill.runs (id) ON DELETE SET NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT windows_key UNIQUE (pipeline, realm_id, window_field, window_start, window_end),
    CHECK (window_end > window_start)
);
CREATE INDEX windows_status_idx ON backfill.windows (pipeline, realm_id, status);
CREATE INDEX windows_run_idx ON backfill.windows (run_id);

-- ---------------------------------------------------------------------------------------------
-- token store
-- ---------------------------------------------------------------------------------------------

-- The newest OAuth refresh token per company. refresh_token is NULL while a row exists only to
-- be locked (first refresh of a realm). Protect this table like the credentials it holds.
CREATE TABLE backfill.oauth_tokens (
    realm_id      TEXT        PRIMARY KEY,
    refresh_token TEXT        CHECK (refresh_token <> ''),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    rotated_count BIGINT      NOT NULL DEFAULT 0 CHECK (rotated_count >= 0)
);
