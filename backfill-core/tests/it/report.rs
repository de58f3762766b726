//! The volumetry report against direct SQL: every figure must equal a plain COUNT.
use std::collections::BTreeMap;

use backfill_core::report::{self, ReportScope};
use backfill_core::{Customer, ENTITIES, Entity, EntityInfo, Invoice, Vendor};
use qbo_sim::Sim;
use raw_sink::Sink;
use time::macros::datetime;

use crate::common::*;

async fn scalar(sink: &Sink, sql: &str, realm: &str) -> i64 {
    let c = sink.pool().get().await.unwrap();
    c.query_one(sql, &[&realm]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_figures_equal_direct_sql_counts() {
    let sim = sim(Sim::builder()
        .seed(21)
        .customers(150)
        .invoices(900)
        .vendors(40)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-21 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let realm = sim.realm_id();
    let cfg = config("2023-01-01", "2023-01-21", "first");
    run::<Customer>(&client, &sink, &cfg).await;
    run::<Vendor>(&client, &sink, &cfg).await;
    run::<Invoice>(&client, &sink, &cfg).await;
    let mut again = cfg.clone();
    again.force = true;
    let forced = run::<Invoice>(&client, &sink, &again).await;
    assert_eq!(forced.counts.unchanged, 900);

    let mut scope = ReportScope::all();
    scope.realm_id = Some(realm.clone());
    let r = report::build(&sink, &scope).await.unwrap();
    assert!(r.ok, "{}", r.summary());
    assert_eq!(r.realm_id.as_deref(), Some(realm.as_str()));

    // Totals per table: one entry per built-in entity, equal to COUNT(*).
    assert_eq!(r.tables.len(), ENTITIES.len());
    for (t, e) in r.tables.iter().zip(ENTITIES) {
        let direct = scalar(
            &sink,
            &format!("SELECT count(*) FROM {} WHERE realm_id = $1", e.table),
            &realm,
        )
        .await;
        assert_eq!(t.rows, u64::try_from(direct).unwrap(), "{}", t.table);
    }
    let rows_of = |table: &str| r.tables.iter().find(|t| t.table == table).unwrap().rows;
    assert_eq!(rows_of("raw.qb_invoices"), 900);
    assert_eq!(rows_of("raw.qb_customers"), 150);
    assert_eq!(rows_of("raw.qb_vendors"), 40);

    // Rows per window: each window's `loaded` is the COUNT of rows carrying that window, and
    // its source COUNT equals what qbo-sim holds for the window.
    let truth = sim.truth("Invoice");
    let inv = r
        .pipelines
        .iter()
        .find(|p| p.pipeline == Invoice::PIPELINE)
        .unwrap();
    assert_eq!(inv.windows.len(), 20);
    assert_eq!(inv.verification.matched, 20);
    assert_eq!(inv.verification.loaded_total, 900);
    assert_eq!(inv.verification.source_total, 900);
    let c = sink.pool().get().await.unwrap();
    let direct: BTreeMap<String, i64> = c
        .query(
            "SELECT to_char(extract_window_start_utc AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), count(*) \
             FROM raw.qb_invoices WHERE realm_id = $1 GROUP BY 1",
            &[&realm],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for w in &inv.windows {
        let want = direct.get(&w.start).copied().unwrap_or(0);
        assert_eq!(w.loaded, u64::try_from(want).unwrap(), "window {}", w.start);
        let start =
            time::OffsetDateTime::parse(&w.start, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let end =
            time::OffsetDateTime::parse(&w.end, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let in_sim = truth.iter().filter(|t| in_range(t, start, end)).count() as u64;
        assert_eq!(w.source_count, Some(in_sim), "window {}", w.start);
        assert_eq!(w.verification, "match");
    }

    // Rows per day add up to the totals.
    let per_day: u64 = r.rows_per_day.iter().map(|d| d.total).sum();
    let all_rows: u64 = r.tables.iter().map(|t| t.rows).sum();
    assert_eq!(per_day, all_rows);
    assert_eq!(
        r.rows_per_day.len(),
        20,
        "every day of the range, gaps included"
    );

    // Runs and triggers as in the ledger.
    let runs = scalar(
        &sink,
        "SELECT count(*) FROM backfill.runs WHERE realm_id = $1",
        &realm,
    )
    .await;
    assert_eq!(r.runs.len() as i64, runs);
    assert!(r.runs.iter().all(|x| x.status == "succeeded"));
    let completed = scalar(
        &sink,
        "SELECT count(*) FROM backfill.triggers WHERE realm_id = $1 AND status = 'completed'",
        &realm,
    )
    .await;
    assert_eq!(
        r.triggers
            .iter()
            .filter(|t| t.status == "completed")
            .count() as i64,
        completed
    );
    assert_eq!(completed, 3);

    // Re-run comparison: the forced run moved nothing.
    assert_eq!(r.reruns.len(), 1, "{:?}", r.reruns);
    let rr = &r.reruns[0];
    assert_eq!(rr.pipeline, Invoice::PIPELINE);
    assert_eq!((rr.previous.inserted, rr.latest.inserted), (900, 0));
    assert_eq!((rr.latest.updated, rr.latest.unchanged), (0, 900));
    assert!(rr.idempotent);
    assert!(rr.previous.id < rr.latest.id);

    // The three files, and the JSON round-trips the same figures.
    let dir = tempfile::tempdir().unwrap();
    let files = r.write_to(&dir.path().join("evidence")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["reruns"][0]["latest"]["inserted"], 0);
    let md = std::fs::read_to_string(&files.markdown).unwrap();
    for section in [
        "## Totals per table",
        "## Verification",
        "## Re-run comparison",
        "## Runs",
        "## One-time triggers",
        "## Rows per day",
        "## Rows per window",
    ] {
        assert!(md.contains(section), "report.md lacks {section}");
    }
    assert!(md.contains("| `raw.qb_invoices` | Invoice | 900 |"));
    assert!(
        std::fs::read_to_string(&files.svg)
            .unwrap()
            .starts_with("<svg")
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatches_come_first_and_fail_the_report() {
    let sim = sim(Sim::builder().seed(22).invoices(200).span(
        datetime!(2023-03-01 00:00 UTC),
        datetime!(2023-03-08 00:00 UTC),
    ))
    .await;
    let (_db, sink) = db().await;
    let realm = sim.realm_id();
    run::<Invoice>(
        &client(&sim),
        &sink,
        &config("2023-03-01", "2023-03-08", "t"),
    )
    .await;
    // The ledger records a COUNT that disagrees with what the window's attempt loaded (as when
    // QBO's COUNT changed under the load): that window no longer matches.
    let c = sink.pool().get().await.unwrap();
    let start: time::OffsetDateTime = c
        .query_one(
            "UPDATE backfill.windows SET source_count = source_count + 1 \
             WHERE id = (SELECT id FROM backfill.windows WHERE realm_id = $1 \
                         ORDER BY window_start DESC LIMIT 1) \
             RETURNING window_start",
            &[&realm],
        )
        .await
        .unwrap()
        .get(0);
    let mut scope = ReportScope::entity::<Invoice>();
    scope.realm_id = Some(realm.clone());
    let r = report::build(&sink, &scope).await.unwrap();
    assert!(!r.ok);
    let p = &r.pipelines[0];
    assert_eq!(p.verification.mismatch, 1);
    assert_eq!(p.verification.matched, 6);
    let first = &p.windows[0];
    assert_eq!(first.verification, "mismatch");
    assert_eq!(first.start, backfill_core::window::format_utc(start));
    assert_eq!(first.source_count, Some(first.loaded + 1));
    assert!(r.summary().contains("1 mismatch"));
    assert!(r.to_markdown().contains("| mismatch |"));
    // Another company's report sees nothing of this one.
    let mut other = ReportScope::entity::<Invoice>();
    other.realm_id = Some("4242".into());
    let empty = report::build(&sink, &other).await.unwrap();
    assert!(empty.ok && empty.pipelines.is_empty() && empty.tables[0].rows == 0);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_entity_has_its_raw_table() {
    let (_db, sink) = db().await;
    let c = sink.pool().get().await.unwrap();
    let layout = |table: &'static str| {
        let c = &c;
        async move {
            c.query(
                "SELECT column_name::text, data_type::text, is_nullable::text \
                 FROM information_schema.columns WHERE table_schema = 'raw' AND table_name = $1 \
                 ORDER BY ordinal_position",
                &[&table],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                )
            })
            .collect::<Vec<_>>()
        }
    };
    let reference = layout("qb_customers").await;
    // SPEC §6's nine columns, then V7's tombstone (`deleted_at_utc`, `deleted_stub`).
    assert_eq!(reference.len(), 11);
    for e in ENTITIES {
        assert_eq!(layout(e.table.name()).await, reference, "{}", e.table);
    }
    // The quarantine (`raw.qb_rejects`) and QBO's report snapshots (`raw.qb_reports`) are
    // the raw tables that are not an entity's.
    let raw_tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'raw' \
             AND tablename NOT IN ('qb_rejects', 'qb_reports')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        raw_tables,
        ENTITIES.len() as i64,
        "no raw table without an entity"
    );
}

/// Every entity the simulator models runs end to end through the generic dispatch, with the
/// Active rule on name lists only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_entity_runs_through_with_entity() {
    use backfill_core::{EntityVisitor, RunConfig, RunReport, with_entity};
    use std::future::Future;
    use std::pin::Pin;

    struct RunIt<'a> {
        client: &'a qbo_client::QboClient,
        sink: &'a Sink,
        cfg: &'a RunConfig,
    }
    impl<'a> EntityVisitor for RunIt<'a> {
        type Output = Pin<Box<dyn Future<Output = (EntityInfo, RunReport)> + 'a>>;
        fn visit<E: Entity>(self) -> Self::Output {
            Box::pin(async move {
                (
                    EntityInfo::of::<E>(),
                    run::<E>(self.client, self.sink, self.cfg).await,
                )
            })
        }
    }

    let sim = sim(Sim::builder()
        .seed(23)
        .customers(30)
        .items(20)
        .invoices(60)
        .vendors(10)
        .span(
            datetime!(2023-05-01 00:00 UTC),
            datetime!(2023-05-04 00:00 UTC),
        ))
    .await;
    let (_db, sink) = db().await;
    let client = client(&sim);
    let cfg = config("2023-05-01", "2023-05-04", "all");
    let known = qbo_sim::known_entities();
    let mut ran = 0;
    for e in ENTITIES {
        assert!(known.contains(&e.name), "qbo-sim models {}", e.name);
        sim.reset_stats();
        let (info, report) = with_entity(
            e.name,
            RunIt {
                client: &client,
                sink: &sink,
                cfg: &cfg,
            },
        )
        .unwrap()
        .await;
        assert_eq!(info, *e);
        assert!(
            report.problems.is_empty(),
            "{}: {:?}",
            e.name,
            report.problems
        );
        let expected = sim.truth(e.name).len() as u64;
        assert_eq!(report.counts.inserted, expected, "{}", e.name);
        let queries: Vec<String> = sim.requests().into_iter().filter_map(|r| r.query).collect();
        assert!(!queries.is_empty(), "{}", e.name);
        let active_filter = queries
            .iter()
            .any(|q| q.contains("Active IN (true, false)"));
        assert_eq!(active_filter, e.name_list, "{}: Active rule", e.name);
        ran += 1;
    }
    assert_eq!(
        ran,
        ENTITIES.len(),
        "every entity ran against the simulator"
    );
    sim.shutdown().await.unwrap();
}
