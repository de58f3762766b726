-- qb-backfill: evidence that says only what was checked, and a quarantine for records that
-- cannot be stored (issue 12).
-- Forward-only: once applied anywhere, never edit this file; add V6__... instead.

-- Whether a window's load was compared with QBO's COUNT. Before this migration a window loaded
-- with --no-verify stored the loaded count as its source count, so windows finished earlier
-- cannot be told apart: they read as unverified until a later run verifies them.
ALTER TABLE backfill.windows
    ADD COLUMN verified BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN rejected BIGINT  NOT NULL DEFAULT 0 CHECK (rejected >= 0);
COMMENT ON COLUMN backfill.windows.verified IS
    'true when the attempt that finished the window compared QBO''s COUNT with what it loaded; source_count is then that COUNT (NULL when unverified).';
COMMENT ON COLUMN backfill.windows.rejected IS
    'Records of the window''s last attempt that could not be stored: they are in raw.qb_rejects.';

-- Records QBO returned that cannot be stored in a raw table (a string holding \u0000, which
-- jsonb refuses; no MetaData; an unparsable timestamp; anything else PostgreSQL refuses), kept
-- as the exact text received with the reason, so the rest of their page still loads and the
-- report can count them. A window's rows here are replaced by each new attempt on the window.
CREATE TABLE raw.qb_rejects (
    id              BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    realm_id        TEXT        NOT NULL,
    entity          TEXT        NOT NULL,
    record_id       TEXT,
    raw_text        TEXT        NOT NULL,
    reason          TEXT        NOT NULL,
    window_id       BIGINT      REFERENCES backfill.windows (id) ON DELETE CASCADE,
    window_start    TIMESTAMPTZ NOT NULL,
    window_end      TIMESTAMPTZ NOT NULL,
    request_payload TEXT        NOT NULL,
    page_number     INT         NOT NULL,
    run_id          BIGINT      REFERENCES backfill.runs (id) ON DELETE SET NULL,
    rejected_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- One row per distinct record text and window: a page read again does not add a copy.
CREATE UNIQUE INDEX qb_rejects_window_text_idx
    ON raw.qb_rejects (realm_id, entity, coalesce(window_id, 0), md5(raw_text));
CREATE INDEX qb_rejects_window_idx ON raw.qb_rejects (window_id);
COMMENT ON TABLE raw.qb_rejects IS
    'Records QBO returned that could not be stored in their raw table, with the reason; counted by the report.';

-- The version of a stored record, for "never replace a newer version with an older one":
-- SyncToken (QBO's per-record update counter) and MetaData.LastUpdatedTime. NULL when the
-- payload does not say (the comparison then does not apply).
CREATE FUNCTION backfill.qbo_sync_token(payload jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN payload->>'SyncToken' ~ '^[0-9]{1,30}$'
                THEN (payload->>'SyncToken')::numeric END
$$;

CREATE FUNCTION backfill.qbo_last_updated(payload jsonb) RETURNS timestamptz
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (payload->'MetaData'->>'LastUpdatedTime')::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- Whether payload `stored` is a newer version than `incoming`.
CREATE FUNCTION backfill.qbo_is_newer(stored jsonb, incoming jsonb) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN backfill.qbo_sync_token(stored) IS NOT NULL
         AND backfill.qbo_sync_token(incoming) IS NOT NULL
         AND backfill.qbo_sync_token(stored) <> backfill.qbo_sync_token(incoming)
        THEN backfill.qbo_sync_token(stored) > backfill.qbo_sync_token(incoming)
        ELSE coalesce(backfill.qbo_last_updated(stored) > backfill.qbo_last_updated(incoming), false)
    END
$$;
