-- Raw payloads are TOAST-compressed with lz4 instead of PostgreSQL's default pglz.
--
-- Why: profiling the ingest benchmark (`cargo xtask bench ingest`, docs/PERFORMANCE.md) found
-- pglz_compress to be the largest single cost of a load, about 45% of PostgreSQL's CPU time;
-- lz4 compresses several times faster (and decompresses faster, which re-runs use to compare
-- payloads) for about 10% more space. Only the storage of values changes: each stored value
-- records its own method, so rows written before this migration stay readable as they are.
--
-- A PostgreSQL built without lz4 support keeps pglz: the block then only raises a notice.
-- A raw table created by a later migration should get the same setting (a block like this one,
-- or `payload JSONB NOT NULL COMPRESSION lz4` where lz4 is known to be available).
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT c.oid::regclass
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'payload' AND NOT a.attisdropped
        WHERE n.nspname = 'raw' AND c.relkind IN ('r', 'p')
        ORDER BY c.relname
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER COLUMN payload SET COMPRESSION lz4', t);
    END LOOP;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available in this PostgreSQL build: raw payloads stay pglz-compressed';
END
$$;
