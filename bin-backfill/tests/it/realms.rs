//! Many companies from one invocation: `--all-realms` / `--realm` with per-realm limits, and
//! the app's monthly call budget counted in the ledger.

use qbo_sim::{Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

use crate::common::*;

pub(crate) const REALMS: [&str; 3] = ["9130000000000101", "9130000000000102", "9130000000000103"];

async fn three_companies() -> SimHandle {
    Sim::builder()
        .seed(8)
        .realm_id(REALMS[0])
        .extra_realm(REALMS[1], 9)
        .extra_realm(REALMS[2], 10)
        .customers(80)
        .invoices(300)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap()
}

/// Stores each company's refresh token, as `auth connect` would have.
pub(crate) async fn connect_all(sim: &SimHandle, db: &TestDb) {
    let sink = db.migrated_sink().await;
    let client = sink.pool().get().await.unwrap();
    for r in sim.realm_ids() {
        client
            .execute(
                "INSERT INTO backfill.oauth_tokens (realm_id, refresh_token, client_id) VALUES ($1, $2, $3)",
                &[&r, &sim.refresh_token_for(&r).unwrap(), &sim.client_id()],
            )
            .await
            .unwrap();
    }
}

pub(crate) fn many(sim: &SimHandle, url: &str, args: &[&str]) -> std::process::Command {
    let mut c = command(sim, url, args);
    c.env_remove("QBO_REFRESH_TOKEN").env_remove("QBO_REALM_ID");
    c
}

pub(crate) async fn count(db: &TestDb, sql: &str, realm: &str) -> i64 {
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    client.query_one(sql, &[&realm]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_companies_in_one_invocation_each_exact_and_within_its_limits() {
    let sim = three_companies().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    connect_all(&sim, &db).await;
    let args = [
        "--entity",
        "Invoice",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--all-realms",
        "--realms-in-flight",
        "3",
    ];
    run_expect(many(&sim, &url, &args), 0).await;
    for r in REALMS {
        let truth = sim.realm(r).unwrap().truth("Invoice").unwrap();
        let rows = count(
            &db,
            "SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1",
            r,
        )
        .await;
        assert_eq!(rows, truth.len() as i64, "{r}");
        let done = count(
            &db,
            "SELECT count(*) FROM backfill.windows WHERE realm_id = $1 AND status = 'done'",
            r,
        )
        .await;
        assert_eq!(done, 10, "{r}");
    }
    // Every company was asked for, and no realm's limits were exceeded.
    let st = sim.stats();
    assert_eq!(st.throttled, 0, "{st:?}");
    assert!(st.peak_concurrency <= 10, "{st:?}");
    let realms_queried: std::collections::BTreeSet<String> = sim
        .requests()
        .into_iter()
        .filter(|q| q.endpoint == "query")
        .filter_map(|q| q.realm)
        .collect();
    assert_eq!(realms_queried.len(), 3);
    // A company connected with another app is left to that app's runs.
    db.sink()
        .await
        .pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE backfill.oauth_tokens SET client_id = 'ABanotherApp' WHERE realm_id = $1",
            &[&REALMS[2]],
        )
        .await
        .unwrap();
    let mut again = many(&sim, &url, &args);
    again.arg("--force");
    let o = run_expect(again, 0).await;
    let (_, err) = text(&o);
    assert!(
        err.contains("realms_of_other_apps_skipped") && err.contains(REALMS[2]),
        "{err}"
    );
    // --realm names companies one by one (here one of them, again: nothing left to load).
    let o = run_expect(
        many(
            &sim,
            &url,
            &[
                "--entity",
                "Invoice",
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-11",
                "--realm",
                REALMS[1],
                "--force",
            ],
        ),
        0,
    )
    .await;
    let (_, err) = text(&o);
    assert!(err.contains(REALMS[1]) && !err.contains(REALMS[2]), "{err}");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_budget_stops_a_run_and_the_next_month_resumes() {
    let sim = three_companies().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    connect_all(&sim, &db).await;
    let args = [
        "--entity",
        "Invoice",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--realm",
        REALMS[0],
        "--page-size",
        "20",
        "--monthly-requests",
        "8",
        "--concurrency",
        "1",
    ];
    let queries = |sim: &SimHandle| sim.stats().endpoint_total("query");
    run_expect(many(&sim, &url, &args), 1).await;
    let first = queries(&sim);
    assert!(first > 0 && first <= 8, "{first}");
    let recorded = count(
        &db,
        "SELECT COALESCE(sum(api_calls), 0)::bigint FROM backfill.runs WHERE realm_id = $1",
        REALMS[0],
    )
    .await;
    assert_eq!(recorded, first as i64);
    let done_sql = "SELECT count(*) FROM backfill.windows WHERE realm_id = $1 AND status = 'done'";
    assert!(count(&db, done_sql, REALMS[0]).await < 10);

    // Same month: the budget is spent, nothing is called.
    let o = run_expect(many(&sim, &url, &args), 1).await;
    let (_, err) = text(&o);
    assert!(err.contains("monthly_budget_reached"), "{err}");
    assert_eq!(queries(&sim), first);

    // Next month (the ledger's runs aged by a month): the run resumes where it stopped.
    let sink = db.sink().await;
    sink.pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE backfill.runs SET started_at = started_at - interval '40 days', \
             finished_at = finished_at - interval '40 days'",
            &[],
        )
        .await
        .unwrap();
    run_expect(many(&sim, &url, &args), 1).await;
    let second = queries(&sim) - first;
    assert!(second > 0 && second <= 8, "{second}");
    // With room in the budget the same command finishes the range (windows already done are
    // not asked for again).
    let mut room: Vec<&str> = args.to_vec();
    let at = room.iter().position(|a| *a == "8").unwrap();
    room[at] = "10000";
    run_expect(many(&sim, &url, &room), 0).await;
    assert_eq!(count(&db, done_sql, REALMS[0]).await, 10);
    let rows = count(
        &db,
        "SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1",
        REALMS[0],
    )
    .await;
    assert_eq!(
        rows,
        sim.realm(REALMS[0])
            .unwrap()
            .truth("Invoice")
            .unwrap()
            .len() as i64
    );
    sim.shutdown().await.unwrap();
}

pub(crate) const APP_B: &str = "ABsecondAppClientId0000000000000000000000000000000";
pub(crate) const APP_B_SECRET: &str = "secondAppSecret0XYZ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_companies_on_two_apps_in_one_invocation() {
    let sim = Sim::builder()
        .seed(8)
        .realm_id(REALMS[0])
        .extra_realm(REALMS[1], 9)
        .extra_app(APP_B, APP_B_SECRET)
        .realm_app(REALMS[1], APP_B)
        .customers(40)
        .invoices(100)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap();
    let db = TestDb::new().await;
    let url = db_url(&db);
    let sink = db.migrated_sink().await;
    let client = sink.pool().get().await.unwrap();
    for (r, app) in [(REALMS[0], sim.client_id()), (REALMS[1], APP_B.to_owned())] {
        client
            .execute(
                "INSERT INTO backfill.oauth_tokens (realm_id, refresh_token, client_id) VALUES ($1, $2, $3)",
                &[&r, &sim.refresh_token_for(r).unwrap(), &app],
            )
            .await
            .unwrap();
    }
    let args = [
        "--entity",
        "Invoice",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--realm",
        REALMS[0],
        "--realm",
        REALMS[1],
        "--realms-in-flight",
        "2",
    ];
    let rows = |r: &'static str| {
        let db = &db;
        async move {
            count(
                db,
                "SELECT count(*) FROM raw.qb_invoices WHERE realm_id = $1",
                r,
            )
            .await
        }
    };
    let truth = |r: &str| sim.realm(r).unwrap().truth("Invoice").unwrap().len() as i64;

    // Without the second app's secret: that company stops in one line naming it, both apps and
    // the fix, before its token is sent to the wrong app; the other company is loaded.
    let o = run_expect(many(&sim, &url, &args), 2).await;
    let (out, err) = text(&o);
    let line = format!(
        "company {} was connected with app {APP_B}, but QBO_CLIENT_ID is {}",
        REALMS[1],
        sim.client_id()
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains(&line) && errors[0].contains("QBO_APPS_FILE"),
        "{err}"
    );
    assert_eq!(sim.stats().token_failures, 0, "{:?}", sim.stats());
    assert_eq!(rows(REALMS[0]).await, truth(REALMS[0]));
    assert_eq!(rows(REALMS[1]).await, 0);

    // With QBO_APPS_FILE mapping the second app to its secret, both run in one invocation,
    // each with its own app, and the secret is printed nowhere.
    let dir = tempfile::tempdir().unwrap();
    let apps = dir.path().join("apps.json");
    std::fs::write(&apps, format!("{{\"{APP_B}\": \"{APP_B_SECRET}\"}}")).unwrap();
    let mut c = many(&sim, &url, &args);
    // (--force: the first company's range completed in the run above.)
    c.env("QBO_APPS_FILE", &apps).arg("--force");
    let o = run_expect(c, 0).await;
    let (out2, err2) = text(&o);
    for s in [out, err, out2, err2] {
        assert!(!s.contains(APP_B_SECRET) && !s.contains(&sim.client_secret()));
    }
    for r in [REALMS[0], REALMS[1]] {
        assert_eq!(rows(r).await, truth(r), "{r}");
    }
    assert_eq!(sim.stats().token_failures, 0, "{:?}", sim.stats());
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_budget_holds_for_companies_in_flight_and_two_processes() {
    let sim = Sim::builder()
        .seed(8)
        .realm_id(REALMS[0])
        .extra_realm(REALMS[1], 9)
        .extra_realm(REALMS[2], 10)
        .customers(40)
        .invoices(300)
        .latency(
            std::time::Duration::from_millis(40),
            std::time::Duration::ZERO,
        )
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap();
    let db = TestDb::new().await;
    let url = db_url(&db);
    connect_all(&sim, &db).await;
    let args = [
        "--entity",
        "Invoice",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--all-realms",
        "--realms-in-flight",
        "3",
        "--page-size",
        "20",
        "--concurrency",
        "1",
        "--monthly-requests",
        "30",
    ];
    let queries = |sim: &SimHandle| sim.stats().endpoint_total("query");

    // Three companies at once under one budget: each got a share, they ran side by side, and
    // the total stayed within it.
    run_expect(many(&sim, &url, &args), 1).await;
    let first = queries(&sim);
    assert!(first > 0 && first <= 30, "{first}");
    let log = sim.requests();
    let span = |r: &str| {
        let at: Vec<_> = log
            .iter()
            .filter(|q| q.endpoint == "query" && q.realm.as_deref() == Some(r))
            .map(|q| q.at)
            .collect();
        (*at.iter().min().unwrap(), *at.iter().max().unwrap())
    };
    let spans: Vec<_> = REALMS.iter().map(|r| span(r)).collect();
    let latest_start = spans.iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans.iter().map(|s| s.1).min().unwrap();
    assert!(
        latest_start < earliest_end,
        "the companies ran one after another: {spans:?}"
    );

    // Next month, two processes at once on the same budget: together within it.
    let sink = db.sink().await;
    sink.pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE backfill.runs SET started_at = started_at - interval '40 days', \
             finished_at = finished_at - interval '40 days'",
            &[],
        )
        .await
        .unwrap();
    let before = queries(&sim);
    let (a, b) = (many(&sim, &url, &args), many(&sim, &url, &args));
    let (oa, ob) = tokio::join!(output(a), output(b));
    for o in [&oa, &ob] {
        assert!(matches!(o.status.code(), Some(0 | 1)), "{:?}", text(o));
    }
    let second = queries(&sim) - before;
    assert!(second > 0 && second <= 30, "{second}");
    let recorded: i64 = sink
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT COALESCE(sum(api_calls), 0)::bigint FROM backfill.runs \
             WHERE started_at >= date_trunc('month', now())",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, second as i64);
    sim.shutdown().await.unwrap();
}
