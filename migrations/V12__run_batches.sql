-- qb-backfill: batch queries (issue 18). Whether Intuit meters a batch request as one call or
-- as its items is undocumented, so every run records both ways: `api_calls` (already there)
-- stays the metered figure the budgets use and now counts queries (single queries plus batch
-- items); `api_requests` counts HTTP requests (a batch is one), of which `api_batches` were
-- batch requests carrying `api_batch_items` items. Without --batch, api_requests = api_calls.
-- Forward-only: once applied anywhere, never edit this file; add a new V<n>__... instead.

ALTER TABLE backfill.runs
    ADD COLUMN api_requests BIGINT NOT NULL DEFAULT 0 CHECK (api_requests >= 0),
    ADD COLUMN api_batches BIGINT NOT NULL DEFAULT 0 CHECK (api_batches >= 0),
    ADD COLUMN api_batch_items BIGINT NOT NULL DEFAULT 0 CHECK (api_batch_items >= 0);
COMMENT ON COLUMN backfill.runs.api_calls IS
    'QBO queries the run sent, retries included (single queries plus the items of batch requests; token refreshes not): what --max-requests and --monthly-requests count.';
COMMENT ON COLUMN backfill.runs.api_requests IS
    'HTTP requests the run sent to QBO, retries included (a batch request is one, whatever its items).';
COMMENT ON COLUMN backfill.runs.api_batches IS
    'Of api_requests, the batch requests (--batch).';
COMMENT ON COLUMN backfill.runs.api_batch_items IS
    'Query items those batch requests carried (each also counted in api_calls).';
