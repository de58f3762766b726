//! Embedded migrations: exact schema, idempotent, safe under concurrency.

use raw_sink::testing::TestDb;
use raw_sink::{Sink, embedded_migrations};

async fn history(sink: &Sink) -> Vec<(i32, String)> {
    let client = sink.pool().get().await.unwrap();
    client
        .query(
            "SELECT version, name FROM backfill.refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

fn expected_history() -> Vec<(i32, String)> {
    embedded_migrations()
        .iter()
        .map(|m| {
            let (v, name) = m.trim_start_matches('V').split_once("__").unwrap();
            (v.parse().unwrap(), name.to_owned())
        })
        .collect()
}

#[test]
fn migrations_are_embedded_in_order() {
    let names = embedded_migrations();
    assert_eq!(names.first().map(String::as_str), Some("V1__initial"));
    let versions: Vec<u32> = names
        .iter()
        .map(|n| n[1..].split_once("__").unwrap().0.parse().unwrap())
        .collect();
    assert!(versions.is_sorted(), "{names:?}");
}

#[tokio::test]
async fn migrate_twice_is_a_no_op() {
    let db = TestDb::new().await;
    let sink = db.sink().await;
    sink.migrate().await.unwrap();
    let first = history(&sink).await;
    assert_eq!(first, expected_history());
    sink.migrate().await.unwrap();
    assert_eq!(history(&sink).await, first);
    // The history table lives in schema backfill, none in public.
    let client = sink.pool().get().await.unwrap();
    let public: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_once() {
    let db = TestDb::new().await;
    let sinks = futures::future::join_all((0..4).map(|_| db.sink())).await;
    let results = futures::future::join_all(sinks.iter().map(|s| {
        let s = s.clone();
        tokio::spawn(async move { s.migrate().await })
    }))
    .await;
    for r in results {
        r.unwrap().unwrap();
    }
    assert_eq!(history(&sinks[0]).await, expected_history());
    // Connections that held the lock went back to the pool unlocked: a new migrate() on any
    // of them does not wait.
    tokio::time::timeout(std::time::Duration::from_secs(5), sinks[1].migrate())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn raw_tables_match_the_spec() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let client = sink.pool().get().await.unwrap();
    let expected = [
        ("realm_id", "text"),
        ("id", "text"),
        ("payload", "jsonb"),
        ("ingested_at_utc", "timestamp with time zone"),
        ("extract_window_start_utc", "timestamp with time zone"),
        ("extract_window_end_utc", "timestamp with time zone"),
        ("page_number", "integer"),
        ("page_size", "integer"),
        ("request_payload", "text"),
    ];
    for table in ["qb_customers", "qb_items", "qb_invoices"] {
        let columns: Vec<(String, String, String)> = client
            .query(
                "SELECT column_name::text, data_type::text, is_nullable::text \
                 FROM information_schema.columns \
                 WHERE table_schema = 'raw' AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let want: Vec<(String, String, String)> = expected
            .iter()
            .map(|(c, t)| ((*c).to_owned(), (*t).to_owned(), "NO".to_owned()))
            // Issue 14's tombstone, NULL on a current row (V7).
            .chain([
                (
                    "deleted_at_utc".to_owned(),
                    "timestamp with time zone".to_owned(),
                    "YES".to_owned(),
                ),
                (
                    "deleted_stub".to_owned(),
                    "jsonb".to_owned(),
                    "YES".to_owned(),
                ),
            ])
            .collect();
        assert_eq!(columns, want, "{table}");
        let pk: Vec<String> = client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                 WHERE i.indrelid = ('raw.' || $1)::regclass AND i.indisprimary \
                 ORDER BY array_position(i.indkey, a.attnum)",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(pk, ["realm_id", "id"], "{table}");
    }
    let ledger: Vec<String> = client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'backfill' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        ledger,
        [
            "app_budget_reservations",
            "book_check_rows",
            "book_checks",
            "oauth_tokens",
            "refinery_schema_history",
            "report_periods",
            "report_runs",
            "runs",
            "sync_marks",
            "syncs",
            "triggers",
            "windows",
            "workers"
        ]
    );
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let client = sink.pool().get().await.unwrap();
    client
        .execute(
            "UPDATE backfill.refinery_schema_history SET checksum = '1' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    drop(client);
    let e = sink.migrate().await.unwrap_err();
    assert!(matches!(e, raw_sink::SinkError::Migration(_)), "{e:?}");
    assert!(!e.is_retryable());
    // The failed run released the advisory lock (its connection was discarded; the server
    // notices the closed socket within moments).
    let client = sink.pool().get().await.unwrap();
    let mut locked = -1_i64;
    for _ in 0..50 {
        locked = client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if locked == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(locked, 0);
}
