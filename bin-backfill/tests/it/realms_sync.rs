//! `sync` and `reconcile` over several companies (issue 15): `--all-realms` / `--realm` with
//! each company's own token, worker row and per-realm limits, and the app's monthly budget
//! shared between them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use qbo_sim::{Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

use super::realms::{REALMS, connect_all, count, many};
use crate::common::*;

const RANGE: [&str; 4] = ["--start", "2023-01-01", "--end", "2023-01-11"];

/// Three companies, each allowing 2 requests in flight.
async fn three_companies() -> SimHandle {
    Sim::builder()
        .seed(8)
        .realm_id(REALMS[0])
        .extra_realm(REALMS[1], 9)
        .extra_realm(REALMS[2], 10)
        .customers(60)
        .invoices(200)
        .max_concurrency(2)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap()
}

/// Backfills `entity` in every connected company in one invocation.
async fn backfill_all(sim: &SimHandle, url: &str, entity: &str) {
    let mut args = vec!["--entity", entity, "--all-realms", "--max-in-flight", "2"];
    args.extend(RANGE);
    run_expect(many(sim, url, &args), 0).await;
}

/// The raw rows of one company: id → (payload, tombstoned).
async fn rows_of(
    db: &TestDb,
    table: &str,
    realm: &str,
) -> BTreeMap<String, (serde_json::Value, bool)> {
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    c.query(
        &format!(
            "SELECT id, payload::text, deleted_at_utc IS NOT NULL FROM {table} WHERE realm_id = $1"
        ),
        &[&realm],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let text: String = r.get(1);
        (r.get(0), (serde_json::from_str(&text).unwrap(), r.get(2)))
    })
    .collect()
}

/// One company's live raw rows equal its truth payload for payload; its tombstones are
/// exactly `deleted`.
async fn assert_realm_exact(
    db: &TestDb,
    sim: &SimHandle,
    realm: &str,
    (entity, table): (&str, &str),
    deleted: &[String],
) {
    let rows = rows_of(db, table, realm).await;
    let live: BTreeMap<&String, &serde_json::Value> = rows
        .iter()
        .filter(|(_, (_, dead))| !dead)
        .map(|(id, (p, _))| (id, p))
        .collect();
    let truth = sim.realm(realm).unwrap().truth(entity).unwrap();
    assert_eq!(live.len(), truth.len(), "{realm} {entity}: live rows");
    for t in &truth {
        let want: serde_json::Value = serde_json::from_str(&t.json).unwrap();
        assert_eq!(live.get(&t.id), Some(&&want), "{realm} {entity} {}", t.id);
    }
    let dead: BTreeSet<&String> = rows
        .iter()
        .filter(|(_, (_, dead))| *dead)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        dead,
        deleted.iter().collect::<BTreeSet<_>>(),
        "{realm} {entity}: tombstones"
    );
}

async fn scalar(db: &TestDb, sql: &str) -> i64 {
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Changes company `realm` after its backfill: `n` invoices updated (a second apart every 20,
/// so that a sync stopped by its budget can move its mark), two deleted, one created.
fn change(sim: &SimHandle, realm: &str, n: usize) -> Vec<String> {
    let r = sim.realm(realm).unwrap();
    let invoices = r.truth("Invoice").unwrap();
    for (i, t) in invoices[..n].iter().enumerate() {
        if i % 20 == 0 {
            sim.advance_clock(Duration::from_secs(2));
        }
        r.update("Invoice", &t.id).unwrap();
    }
    let deleted: Vec<String> = invoices[150..152].iter().map(|t| t.id.clone()).collect();
    for id in &deleted {
        r.delete("Invoice", id).unwrap();
    }
    r.create("Invoice", None).unwrap();
    deleted
}

/// QBO calls (queries and CDC) the simulator answered per company since its stats were reset.
fn calls_per_realm(sim: &SimHandle) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for q in sim.requests() {
        if matches!(q.endpoint.as_str(), "query" | "cdc") {
            *out.entry(q.realm.unwrap_or_default()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_all_realms_makes_each_company_exact_within_its_own_limits() {
    let sim = three_companies().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    connect_all(&sim, &db).await;
    backfill_all(&sim, &url, "Invoice").await;
    backfill_all(&sim, &url, "Customer").await;
    let mut deleted = BTreeMap::new();
    for (i, r) in REALMS.iter().enumerate() {
        deleted.insert(*r, change(&sim, r, 3 + i));
        let c = sim.realm(r).unwrap();
        let customers = c.truth("Customer").unwrap();
        c.update("Customer", &customers[i].id).unwrap();
    }
    sim.reset_stats();
    let o = run_expect(
        many(
            &sim,
            &url,
            &[
                "--all-realms",
                "--realms-in-flight",
                "3",
                "--max-in-flight",
                "2",
                "sync",
                "--all",
            ],
        ),
        0,
    )
    .await;
    let (out, err) = text(&o);
    for r in REALMS {
        assert!(
            out.contains("Invoice sync") && out.contains(&format!("of realm {r}")),
            "{out}"
        );
        assert_realm_exact(&db, &sim, r, ("Invoice", "raw.qb_invoices"), &deleted[r]).await;
        assert_realm_exact(&db, &sim, r, ("Customer", "raw.qb_customers"), &[]).await;
        let syncs = count(
            &db,
            "SELECT count(*) FROM backfill.syncs WHERE realm_id = $1 AND status = 'succeeded'",
            r,
        )
        .await;
        assert_eq!(syncs, 2, "{r}: one sync per entity");
        // Each company had its own worker row, stopped at its end.
        let workers = count(
            &db,
            "SELECT count(*) FROM backfill.workers WHERE realm_id = $1 AND pipeline = 'sync' \
             AND stopped_at IS NOT NULL AND max_in_flight <= 2",
            r,
        )
        .await;
        assert_eq!(workers, 1, "{r}");
        let finished = err
            .lines()
            .filter(|l| l.contains("realm_finished") && l.contains(r))
            .count();
        assert_eq!(finished, 1, "{r}: {err}");
    }
    // Every company was called, none beyond its own limits (2 in flight per realm; the sim
    // answers 429 to a third), though three ran at once.
    let calls = calls_per_realm(&sim);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let st = sim.stats();
    assert_eq!(st.throttled, 0, "{st:?}");
    assert!(st.peak_concurrency <= 2, "{st:?}");
    // A second sync of all of them writes nothing.
    let last = scalar(&db, "SELECT max(id) FROM backfill.syncs").await;
    run_expect(many(&sim, &url, &["--all-realms", "sync", "--all"]), 0).await;
    let sql = format!(
        "SELECT count(*) FROM backfill.syncs WHERE id > {last} \
         AND (inserted + updated + tombstoned > 0 OR status <> 'succeeded')"
    );
    assert_eq!(scalar(&db, &sql).await, 0);
    assert_eq!(
        scalar(
            &db,
            &format!("SELECT count(*) FROM backfill.syncs WHERE id > {last}")
        )
        .await,
        6
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_of_two_named_companies_tombstones_only_theirs() {
    let sim = three_companies().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    connect_all(&sim, &db).await;
    backfill_all(&sim, &url, "Invoice").await;
    let mut deleted = BTreeMap::new();
    for r in REALMS {
        deleted.insert(r, change(&sim, r, 0));
    }
    sim.reset_stats();
    let o = run_expect(
        many(
            &sim,
            &url,
            &[
                "--entity",
                "Invoice",
                "--realm",
                REALMS[0],
                "--realm",
                REALMS[2],
                "reconcile",
            ],
        ),
        0,
    )
    .await;
    let (out, _) = text(&o);
    for r in [REALMS[0], REALMS[2]] {
        assert!(
            out.contains("Invoice reconcile") && out.contains(&format!("of realm {r}")),
            "{out}"
        );
        let dead = count(
            &db,
            "SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1 AND deleted_at_utc IS NOT NULL",
            r,
        )
        .await;
        assert_eq!(dead, 2, "{r}");
        let mut got: Vec<String> = rows_of(&db, "raw.qb_invoices", r)
            .await
            .into_iter()
            .filter(|(_, (_, dead))| *dead)
            .map(|(id, _)| id)
            .collect();
        got.sort();
        let mut want = deleted[r].clone();
        want.sort();
        assert_eq!(got, want, "{r}");
    }
    // The company not named was neither called nor touched.
    assert!(!calls_per_realm(&sim).contains_key(REALMS[1]));
    let dead = count(
        &db,
        "SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1 AND deleted_at_utc IS NOT NULL",
        REALMS[1],
    )
    .await;
    assert_eq!(dead, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM backfill.syncs WHERE realm_id = $1",
            REALMS[1]
        )
        .await,
        0
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_budget_stops_a_sync_of_several_companies_and_next_month_resumes() {
    let sim = three_companies().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    connect_all(&sim, &db).await;
    let two = ["--realm", REALMS[0], "--realm", REALMS[1]];
    let mut args: Vec<&str> = vec!["--entity", "Invoice"];
    args.extend(two);
    args.extend(RANGE);
    run_expect(many(&sim, &url, &args), 0).await;
    let mut deleted = BTreeMap::new();
    for r in [REALMS[0], REALMS[1]] {
        deleted.insert(r, change(&sim, r, 100));
    }
    let used = count(
        &db,
        "SELECT COALESCE(sum(api_calls), 0)::bigint FROM backfill.runs WHERE realm_id <> $1",
        "",
    )
    .await;
    // Six calls left this month: three for each company.
    let quota = (used + 6).to_string();
    let sync = |quota: &str| {
        let mut a: Vec<&str> = vec!["--entity", "Invoice", "--page-size", "20"];
        a.extend(two);
        a.extend(["--monthly-requests", quota, "sync", "--overlap", "1s"]);
        many(&sim, &url, &a)
    };
    sim.reset_stats();
    let o = run_expect(sync(&quota), 1).await;
    let (_, err) = text(&o);
    assert!(err.contains("budget"), "{err}");
    let calls = calls_per_realm(&sim);
    assert_eq!(calls.get(REALMS[0]), Some(&3), "{calls:?}");
    assert_eq!(calls.get(REALMS[1]), Some(&3), "{calls:?}");
    let recorded = |r: &'static str| {
        let db = &db;
        async move {
            count(
                db,
                "SELECT COALESCE(sum(api_calls), 0)::bigint FROM backfill.syncs WHERE realm_id = $1",
                r,
            )
            .await
        }
    };
    assert_eq!(recorded(REALMS[0]).await, 3);
    assert_eq!(recorded(REALMS[1]).await, 3);

    // Same month: nothing left, nothing asked.
    sim.reset_stats();
    let o = run_expect(sync(&quota), 1).await;
    assert!(
        text(&o).1.contains("monthly_budget_reached"),
        "{}",
        text(&o).1
    );
    assert!(calls_per_realm(&sim).is_empty());

    // Next month (the ledger's runs and syncs aged by 40 days): both resume from their marks,
    // each within its share, until done.
    let sink = db.sink().await;
    let mut runs = 0;
    loop {
        runs += 1;
        assert!(runs <= 12, "the budgeted syncs make no progress");
        sink.pool()
            .get()
            .await
            .unwrap()
            .batch_execute(
                "UPDATE backfill.runs SET started_at = started_at - interval '40 days', \
                 finished_at = finished_at - interval '40 days'; \
                 UPDATE backfill.syncs SET started_at = started_at - interval '40 days', \
                 finished_at = finished_at - interval '40 days'",
            )
            .await
            .unwrap();
        sim.reset_stats();
        let o = output(sync(&quota)).await;
        let calls = calls_per_realm(&sim);
        let total: u64 = calls.values().sum();
        assert!(total > 0, "{calls:?}");
        assert!(
            total <= used as u64 + 6,
            "{calls:?} over the month's budget"
        );
        match o.status.code() {
            Some(0) => break,
            Some(1) => {}
            other => panic!("exit {other:?}: {:?}", text(&o)),
        }
    }
    for r in [REALMS[0], REALMS[1]] {
        assert_realm_exact(&db, &sim, r, ("Invoice", "raw.qb_invoices"), &deleted[r]).await;
    }
    sim.shutdown().await.unwrap();
}
