-- qb-backfill: what `auth status` shows of a connected company (issue 15), beside its token:
-- the company's name, the app (client id) it was connected with, when the refresh token last
-- rotated, its rolling and hard expiries as Intuit last stated them, and the last successful
-- call. None of it is secret; `auth status` reads these columns and never refresh_token.
-- V7 belongs to another change; refinery applies versions in order whatever the gap.
-- Forward-only: once applied anywhere, never edit this file; add V9__... instead.

ALTER TABLE backfill.oauth_tokens
    ADD COLUMN company_name       TEXT,
    ADD COLUMN client_id          TEXT,
    ADD COLUMN connected_at       TIMESTAMPTZ,
    ADD COLUMN rotated_at         TIMESTAMPTZ,
    ADD COLUMN refresh_expires_at TIMESTAMPTZ,
    ADD COLUMN hard_expires_at    TIMESTAMPTZ,
    ADD COLUMN last_success_at    TIMESTAMPTZ;
COMMENT ON COLUMN backfill.oauth_tokens.client_id IS
    'The Intuit app (client id) the company was connected with; its secret is never stored here.';
COMMENT ON COLUMN backfill.oauth_tokens.refresh_expires_at IS
    'When the refresh token expires unless used (x_refresh_token_expires_in at the last grant).';
COMMENT ON COLUMN backfill.oauth_tokens.hard_expires_at IS
    'The grant''s hard expiry (Intuit''s 5-year cap, x_refresh_token_hard_expires_in).';
