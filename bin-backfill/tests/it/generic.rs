use raw_sink::testing::TestDb;

use crate::common::*;

const RANGE: [&str; 4] = ["--start", "2023-01-01", "--end", "2023-01-11"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_entity_by_name_lands_in_its_own_table() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    // Case-insensitive names; a name list and two transactions.
    for entity in ["vendor", "INVOICE", "JournalEntry"] {
        let mut args = vec!["--entity", entity];
        args.extend(RANGE);
        run_expect(command(&sim, &url, &args), 0).await;
    }
    // The entity may also come from QB_ENTITY (one image, many jobs).
    let mut c = command(&sim, &url, &RANGE);
    c.env("QB_ENTITY", "Customer");
    run_expect(c, 0).await;

    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    for (table, pipeline, expected) in [
        (
            "raw.qb_vendors",
            "qb_vendors_backfill",
            sim.truth("Vendor").len(),
        ),
        ("raw.qb_invoices", "qb_invoices_backfill", 500),
        ("raw.qb_customers", "qb_customers_backfill", 120),
        (
            "raw.qb_journal_entries",
            "qb_journal_entries_backfill",
            sim.truth("JournalEntry").len(),
        ),
    ] {
        let rows: i64 = client
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, expected as i64, "{table}");
        let done: i64 = client
            .query_one(
                "SELECT count(*) FROM backfill.windows WHERE pipeline = $1 AND status = 'done'",
                &[&pipeline],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(done, 10, "{pipeline}");
    }
    // Vendors are a name list: the query asked for inactive ones too.
    let vendor_queries: Vec<String> = sim
        .requests()
        .into_iter()
        .filter_map(|r| r.query)
        .filter(|q| q.contains("FROM Vendor"))
        .collect();
    assert!(!vendor_queries.is_empty());
    assert!(
        vendor_queries
            .iter()
            .all(|q| q.contains("Active IN (true, false)"))
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_before_anything_is_called() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    for (args, needle) in [
        (
            vec![
                "--entity",
                "Invoices",
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-02",
            ],
            "unknown entity",
        ),
        (
            vec!["--start", "2023-01-01", "--end", "2023-01-02"],
            "--entity NAME",
        ),
        (
            vec![
                "--entity",
                "Vendor",
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-02",
                "--window-field",
                "TxnDate",
            ],
            "does not apply to Vendor",
        ),
    ] {
        let o = run_expect(command(&sim, &url, &args), 2).await;
        let (_, err) = text(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.lines().filter(|l| l.contains("error")).count(),
            1,
            "{err}"
        );
    }
    assert!(sim.requests().is_empty(), "nothing was called");
    sim.shutdown().await.unwrap();
}

#[test]
fn help_shows_examples_and_every_entity() {
    let o = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Examples:"), "{out}");
    assert!(out.contains("qb-backfill --entity Bill --fecha-inicio"));
    for e in backfill_core::ENTITIES {
        assert!(
            out.contains(e.name) && out.contains(&e.table.to_string()),
            "{}",
            e.name
        );
    }
}

/// The entities the simulator now models with realistic shapes (nested lines, linked
/// transactions, custom fields, amounts as text) land exactly: every record, payload equal as
/// JSON with numbers compared by PostgreSQL's numeric, and every window verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realistic_shapes_of_every_modelled_entity_land_exactly() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let sink = db.sink().await;
    for (entity, table) in [
        ("Payment", "raw.qb_payments"),
        ("Bill", "raw.qb_bills"),
        ("JournalEntry", "raw.qb_journal_entries"),
        ("Estimate", "raw.qb_estimates"),
        ("SalesReceipt", "raw.qb_sales_receipts"),
        ("Account", "raw.qb_accounts"),
        ("Employee", "raw.qb_employees"),
    ] {
        let mut args = vec![
            "--entity",
            entity,
            "--start",
            "2000-01-01",
            "--end",
            "2026-01-01",
        ];
        args.extend(["--window", "366d"]);
        run_expect(command(&sim, &url, &args), 0).await;
        let truth = sim.truth(entity);
        assert!(!truth.is_empty(), "the simulator models {entity}");
        let ids: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
        let jsons: Vec<String> = truth.iter().map(|t| t.json.clone()).collect();
        let client = sink.pool().get().await.unwrap();
        let row = client
            .query_one(
                &format!(
                    "SELECT count(*) FILTER (WHERE r.id IS NULL), \
                            count(*) FILTER (WHERE r.payload IS DISTINCT FROM t.json::jsonb), \
                            (SELECT count(*) FROM {table}) \
                     FROM unnest($1::text[], $2::text[]) AS t(id, json) \
                     LEFT JOIN {table} r ON r.id = t.id"
                ),
                &[&ids, &jsons],
            )
            .await
            .unwrap();
        let (missing, differing, rows): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((missing, differing), (0, 0), "{entity}");
        assert_eq!(rows, truth.len() as i64, "{entity}: no stray rows");
        let unverified: i64 = client
            .query_one(
                "SELECT count(*) FROM backfill.windows WHERE pipeline LIKE $1 \
                 AND (status <> 'done' OR NOT verified)",
                &[&"qb_%_backfill"],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(unverified, 0, "{entity}");
    }
    sim.shutdown().await.unwrap();
}
