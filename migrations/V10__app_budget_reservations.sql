-- qb-backfill: the app's monthly call budget shared by companies in flight and by processes
-- (issue 15). A company's run reserves its calls here before it starts, under an advisory
-- lock per app, so that reservations plus the calls the runs of this month recorded never
-- pass --monthly-requests however many companies and processes run at once; it releases the
-- reservation when it ends (its calls are then in backfill.runs.api_calls). A reservation
-- left by a process that died stops counting after a day.
-- V10 is this change's; V11 and V12 belong to others. Forward-only: never edit once applied.

CREATE TABLE backfill.app_budget_reservations (
    id          BIGSERIAL PRIMARY KEY,
    client_id   TEXT        NOT NULL,
    realm_id    TEXT        NOT NULL,
    calls       BIGINT      NOT NULL CHECK (calls > 0),
    reserved_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    released_at TIMESTAMPTZ
);
CREATE INDEX app_budget_reservations_open
    ON backfill.app_budget_reservations (client_id, reserved_at)
    WHERE released_at IS NULL;
