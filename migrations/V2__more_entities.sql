-- qb-backfill: raw tables for every other QBO query entity (issue 6, SPEC §6).
-- Forward-only: once applied anywhere, never edit this file; add V3__... instead.
--
-- One table per entity, `raw.qb_<entity plural, snake case>`, with exactly the layout of the
-- tables of V1. The entities themselves (name, table, Active rule, TxnDate) are declared once, in
-- backfill-core/src/entity.rs; a unit test there checks that every declared table is created here.

CREATE TABLE raw.qb_accounts (
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
COMMENT ON TABLE raw.qb_accounts IS 'QBO Account records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_bills (
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
COMMENT ON TABLE raw.qb_bills IS 'QBO Bill records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_bill_payments (
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
COMMENT ON TABLE raw.qb_bill_payments IS 'QBO BillPayment records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_classes (
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
COMMENT ON TABLE raw.qb_classes IS 'QBO Class records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_credit_memos (
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
COMMENT ON TABLE raw.qb_credit_memos IS 'QBO CreditMemo records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_departments (
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
COMMENT ON TABLE raw.qb_departments IS 'QBO Department records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_deposits (
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
COMMENT ON TABLE raw.qb_deposits IS 'QBO Deposit records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_employees (
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
COMMENT ON TABLE raw.qb_employees IS 'QBO Employee records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_estimates (
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
COMMENT ON TABLE raw.qb_estimates IS 'QBO Estimate records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_journal_entries (
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
COMMENT ON TABLE raw.qb_journal_entries IS 'QBO JournalEntry records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_payments (
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
COMMENT ON TABLE raw.qb_payments IS 'QBO Payment records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_payment_methods (
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
COMMENT ON TABLE raw.qb_payment_methods IS 'QBO PaymentMethod records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_purchases (
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
COMMENT ON TABLE raw.qb_purchases IS 'QBO Purchase records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_purchase_orders (
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
COMMENT ON TABLE raw.qb_purchase_orders IS 'QBO PurchaseOrder records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_refund_receipts (
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
COMMENT ON TABLE raw.qb_refund_receipts IS 'QBO RefundReceipt records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_sales_receipts (
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
COMMENT ON TABLE raw.qb_sales_receipts IS 'QBO SalesReceipt records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_tax_codes (
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
COMMENT ON TABLE raw.qb_tax_codes IS 'QBO TaxCode records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_tax_rates (
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
COMMENT ON TABLE raw.qb_tax_rates IS 'QBO TaxRate records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_terms (
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
COMMENT ON TABLE raw.qb_terms IS 'QBO Term records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_time_activities (
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
COMMENT ON TABLE raw.qb_time_activities IS 'QBO TimeActivity records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_transfers (
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
COMMENT ON TABLE raw.qb_transfers IS 'QBO Transfer records (transaction) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_vendors (
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
COMMENT ON TABLE raw.qb_vendors IS 'QBO Vendor records (name list) as returned by the API, one row per (realm_id, id).';

CREATE TABLE raw.qb_vendor_credits (
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
COMMENT ON TABLE raw.qb_vendor_credits IS 'QBO VendorCredit records (transaction) as returned by the API, one row per (realm_id, id).';
