-- qb-backfill: QBO reports as data and their ledger (issue 17).
-- Forward-only: once applied anywhere, never edit this file; add a new V<n>__... instead.

-- One snapshot per (company, report, parameters, period): the report's JSON exactly as QBO
-- returned it. `params` is the canonical text of the parameters other than the period
-- (`accounting_method=Accrual`, sorted `key=value` joined by `&`), `request` the whole query
-- string as sent. Loading the same report again writes nothing unless its payload changed
-- (then `payload`, `request` and `fetched_at_utc` are replaced and `changes` counts up).
CREATE TABLE raw.qb_reports (
    realm_id        TEXT        NOT NULL,
    report_name     TEXT        NOT NULL,
    params          TEXT        NOT NULL,
    period_start    DATE        NOT NULL,
    period_end      DATE        NOT NULL CHECK (period_end >= period_start),
    request         TEXT        NOT NULL,
    payload         JSONB       NOT NULL,
    fetched_at_utc  TIMESTAMPTZ NOT NULL,
    changes         INT         NOT NULL DEFAULT 0 CHECK (changes >= 0),
    PRIMARY KEY (realm_id, report_name, params, period_start, period_end)
);
COMMENT ON TABLE raw.qb_reports IS 'QBO report snapshots as returned by the Reports API, one row per (realm, report, parameters, period).';

-- The reports ledger: which report-periods a `reports` run has loaded, so an interrupted run
-- resumes with the periods still owed. A period is `done` once its snapshot is stored (in the
-- same transaction), `failed` with the error that stopped it.
CREATE TABLE backfill.report_periods (
    realm_id        TEXT        NOT NULL,
    report_name     TEXT        NOT NULL,
    params          TEXT        NOT NULL,
    period_start    DATE        NOT NULL,
    period_end      DATE        NOT NULL CHECK (period_end >= period_start),
    status          TEXT        NOT NULL CHECK (status IN ('done', 'failed')),
    outcome         TEXT        CHECK (outcome IN ('inserted', 'updated', 'unchanged')),
    api_calls       BIGINT      NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    error           TEXT,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, report_name, params, period_start, period_end)
);
