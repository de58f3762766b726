-- qb-backfill: keeping the raw layer true after the backfill (issue 14): tombstones for
-- records QBO deleted, the sync / reconcile ledger and each entity's high-water marks.
-- Forward-only: once applied anywhere, never edit this file; add a new V<n>__... instead.

-- Tombstones, never physical deletes: a record QBO deleted (seen as "Deleted" by CDC and
-- confirmed absent by a read, or found missing by reconcile) keeps its last payload and gets
-- deleted_at_utc (when QBO deleted it, from the CDC stub, else when we found out) and, when
-- CDC said so, the stub exactly as it came. A record that is returned again clears both.
-- "Current rows" are `WHERE deleted_at_utc IS NULL` (docs/VOLUMETRY.md).
ALTER TABLE raw.qb_customers ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_items ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_invoices ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_accounts ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_bills ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_bill_payments ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_classes ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_credit_memos ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_departments ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_deposits ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_employees ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_estimates ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_journal_entries ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_payments ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_payment_methods ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_purchases ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_purchase_orders ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_refund_receipts ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_sales_receipts ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_tax_codes ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_tax_rates ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_terms ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_time_activities ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_transfers ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_vendors ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;
ALTER TABLE raw.qb_vendor_credits ADD COLUMN deleted_at_utc TIMESTAMPTZ NULL, ADD COLUMN deleted_stub JSONB NULL;

-- One row per `sync` or `reconcile` invocation of one pipeline (entity) in one company.
CREATE TABLE backfill.syncs (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            TEXT        NOT NULL CHECK (kind IN ('sync', 'reconcile')),
    pipeline        TEXT        NOT NULL,
    realm_id        TEXT        NOT NULL,
    entity          TEXT        NOT NULL,
    status          TEXT        NOT NULL DEFAULT 'running'
                    CHECK (status IN ('running', 'succeeded', 'failed', 'refused', 'interrupted')),
    -- The marks the sync started from and those it left (NULL until it finishes).
    changes_mark_before TIMESTAMPTZ,
    deletes_mark_before TIMESTAMPTZ,
    changes_mark_after  TIMESTAMPTZ,
    deletes_mark_after  TIMESTAMPTZ,
    inserted        BIGINT      NOT NULL DEFAULT 0 CHECK (inserted >= 0),
    updated         BIGINT      NOT NULL DEFAULT 0 CHECK (updated >= 0),
    unchanged       BIGINT      NOT NULL DEFAULT 0 CHECK (unchanged >= 0),
    tombstoned      BIGINT      NOT NULL DEFAULT 0 CHECK (tombstoned >= 0),
    -- CDC "Deleted" stubs that a read by Id found still present (not tombstoned).
    deletes_refuted BIGINT      NOT NULL DEFAULT 0 CHECK (deletes_refuted >= 0),
    api_calls       BIGINT      NOT NULL DEFAULT 0 CHECK (api_calls >= 0),
    error           TEXT,
    started_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at     TIMESTAMPTZ,
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX syncs_pipeline_realm_started_idx
    ON backfill.syncs (pipeline, realm_id, started_at DESC);

-- Per entity and company, how far the raw layer is known to be current (QBO's clock):
-- changes_mark — every record with MetaData.LastUpdatedTime before it has been loaded;
-- deletes_mark — every deletion QBO reported before it has been applied.
-- Moved only by a sync or reconcile that succeeded, in the transaction that finishes it.
CREATE TABLE backfill.sync_marks (
    pipeline     TEXT        NOT NULL,
    realm_id     TEXT        NOT NULL,
    entity       TEXT        NOT NULL,
    changes_mark TIMESTAMPTZ NOT NULL,
    deletes_mark TIMESTAMPTZ NOT NULL,
    last_sync_id BIGINT      REFERENCES backfill.syncs (id) ON DELETE SET NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (pipeline, realm_id)
);
