-- qb-backfill: the evidence of `check-books` and the calls of `reports` (issue 17).
-- Forward-only: once applied anywhere, never edit this file; add a new V<n>__... instead.

-- One row per `check-books` invocation in one company: the range asked, how far it got
-- (`compared_through`: the last day of the last month compared; months after it were not
-- compared), its outcome and the QBO calls it spent. `agreed`: every month compared agrees;
-- `differs`: some month, type or entity differs; `stopped`: a signal or the request budget
-- ended it before the whole range was compared (the months compared are still recorded);
-- `failed`: QBO or the database refused.
CREATE TABLE backfill.book_checks (
    id                BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    realm_id          TEXT        NOT NULL,
    range_start       DATE        NOT NULL,
    range_end         DATE        NOT NULL CHECK (range_end >= range_start),
    accounting_method TEXT        NOT NULL,
    status            TEXT        NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'agreed', 'differs', 'stopped', 'failed')),
    months_planned    INT         NOT NULL DEFAULT 0 CHECK (months_planned >= 0),
    months_compared   INT         NOT NULL DEFAULT 0 CHECK (months_compared >= 0),
    compared_through  DATE,
    api_calls         BIGINT      NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    error             TEXT,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at       TIMESTAMPTZ,
    CHECK ((status = 'running') = (finished_at IS NULL)),
    CHECK (compared_through IS NULL OR compared_through BETWEEN range_start AND range_end)
);
CREATE INDEX book_checks_realm_started_idx ON backfill.book_checks (realm_id, started_at DESC);

-- What one check found, per month and entity (or per transaction type no raw table carries):
-- the books' count and total (home currency) beside the raw layer's. `agrees` and `differs`
-- compare an entity's live raw rows; `not_loaded` is an entity the books hold and the raw
-- layer never loaded (raw figures NULL); `unmapped` a transaction type no entity of ours
-- carries (`label` is the type). Only months compared have rows.
CREATE TABLE backfill.book_check_rows (
    check_id      BIGINT  NOT NULL REFERENCES backfill.book_checks (id) ON DELETE CASCADE,
    month         DATE    NOT NULL CHECK (extract(day FROM month) = 1),
    kind          TEXT    NOT NULL CHECK (kind IN ('agrees', 'differs', 'not_loaded', 'unmapped')),
    label         TEXT    NOT NULL,
    txn_types     TEXT[]  NOT NULL,
    books_rows    BIGINT  NOT NULL CHECK (books_rows >= 0),
    books_amount  NUMERIC NOT NULL,
    raw_rows      BIGINT  CHECK (raw_rows >= 0),
    raw_amount    NUMERIC,
    PRIMARY KEY (check_id, month, kind, label),
    CHECK ((kind IN ('agrees', 'differs')) = (raw_rows IS NOT NULL AND raw_amount IS NOT NULL))
);

-- One row per `reports` invocation in one company, so its QBO calls are in the ledger (the
-- monthly budget counts them with the runs' and the checks').
CREATE TABLE backfill.report_runs (
    id                BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    realm_id          TEXT        NOT NULL,
    range_start       DATE        NOT NULL,
    range_end         DATE        NOT NULL CHECK (range_end >= range_start),
    period            TEXT        NOT NULL,
    accounting_method TEXT        NOT NULL,
    reports           TEXT[]      NOT NULL,
    status            TEXT        NOT NULL DEFAULT 'running'
                      CHECK (status IN ('running', 'succeeded', 'partial', 'stopped', 'failed')),
    periods_loaded    INT         NOT NULL DEFAULT 0 CHECK (periods_loaded >= 0),
    periods_failed    INT         NOT NULL DEFAULT 0 CHECK (periods_failed >= 0),
    periods_left      INT         NOT NULL DEFAULT 0 CHECK (periods_left >= 0),
    api_calls         BIGINT      NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    error             TEXT,
    started_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at       TIMESTAMPTZ,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX report_runs_realm_started_idx ON backfill.report_runs (realm_id, started_at DESC);
