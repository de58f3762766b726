-- qb-backfill: every run records the QBO API calls it made (issue 13): Intuit meters read
-- calls ("CorePlus": 500,000 a month on the free tier, shared by every company of the app), so
-- the ledger says what each run spent.
-- Forward-only: once applied anywhere, never edit this file; add V7__... instead.

ALTER TABLE backfill.runs
    ADD COLUMN api_calls BIGINT NOT NULL DEFAULT 0 CHECK (api_calls >= 0);
COMMENT ON COLUMN backfill.runs.api_calls IS
    'QBO API requests the run sent (pages and COUNTs, every retry included; token refreshes not).';
