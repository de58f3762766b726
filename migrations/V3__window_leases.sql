-- qb-backfill: cooperative workers, window leases and shared QBO budget (issue 8).
-- Forward-only: once applied anywhere, never edit this file; add V4__... instead.
--
-- Several processes (same pipeline, realm, range and trigger; one machine or many) share the
-- windows of a backfill through these rows, with no coordinator besides PostgreSQL:
--   * every process registers itself in backfill.workers and renews its lease (heartbeat);
--   * a window is claimed by setting lease_owner / lease_expires_at on it, with
--     SELECT ... FOR UPDATE SKIP LOCKED so that two processes never claim the same window;
--   * the owner renews the lease while it works; a window whose lease expired (its worker died
--     or lost the database) can be claimed again by anyone;
--   * the realm's QBO request budget is split into shares held by live workers
--     (per_minute / max_in_flight below), so that the sum over every process of a realm stays
--     within QBO's limits.
-- All lease times use the database clock (now()), never a worker's clock.

CREATE TABLE backfill.workers (
    id               TEXT        PRIMARY KEY CHECK (id <> ''),
    pipeline         TEXT        NOT NULL,
    realm_id         TEXT        NOT NULL,
    trigger_name     TEXT,
    run_id           BIGINT      REFERENCES backfill.runs (id) ON DELETE SET NULL,
    -- Where the process runs: host name, boot id and PID namespace, so that a worker on the same
    -- machine can tell a dead process (pid gone, or reused: see pid_start) without waiting for
    -- its lease to expire. Empty when unknown.
    host             TEXT        NOT NULL DEFAULT '',
    pid              INT,
    pid_start        BIGINT,
    -- The share of the realm's QBO budget this worker holds (NULL: it takes part in no shared
    -- budget, e.g. an embedding service that configures its own client).
    per_minute       INT         CHECK (per_minute > 0),
    max_in_flight    INT         CHECK (max_in_flight > 0),
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires_at TIMESTAMPTZ NOT NULL,
    stopped_at       TIMESTAMPTZ,
    CHECK ((per_minute IS NULL) = (max_in_flight IS NULL))
);
CREATE INDEX workers_live_idx ON backfill.workers (realm_id, lease_expires_at)
    WHERE stopped_at IS NULL;
COMMENT ON TABLE backfill.workers IS
    'Pipeline processes sharing backfills through window leases; each holds a share of its realm''s QBO budget.';

ALTER TABLE backfill.windows
    ADD COLUMN lease_owner      TEXT,
    ADD COLUMN lease_expires_at TIMESTAMPTZ,
    ADD CONSTRAINT windows_lease_pair CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL));
CREATE INDEX windows_lease_owner_idx ON backfill.windows (lease_owner)
    WHERE lease_owner IS NOT NULL;
COMMENT ON COLUMN backfill.windows.lease_owner IS
    'backfill.workers.id of the process that claimed the window; free when NULL or expired.';
