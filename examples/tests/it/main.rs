//! The example programs, compiled by Cargo next to this test, run against qbo-sim (and a real
//! PostgreSQL for the two that use one).
#![allow(clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use qbo_sim::{Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

/// `target/<profile>/examples/<name>`: Cargo builds a package's examples before its tests.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built; run the tests through cargo (`cargo test -p examples`)",
        path.display()
    );
    let mut c = Command::new(path);
    c.env_clear().stdin(Stdio::null());
    c
}

fn with_qbo(mut c: Command, sim: &SimHandle) -> Command {
    c.env("QBO_CLIENT_ID", sim.client_id())
        .env("QBO_CLIENT_SECRET", sim.client_secret())
        .env("QBO_REFRESH_TOKEN", sim.refresh_token())
        .env("QBO_REALM_ID", sim.realm_id())
        .env("QBO_ENV", "sandbox")
        .env("QBO_BASE_URL", sim.base_url())
        .env("QBO_TOKEN_URL", sim.token_url());
    c
}

fn db_url(db: &TestDb) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL must point at PostgreSQL");
    let (head, tail) = match base.split_once('?') {
        Some((h, t)) => (h.to_owned(), format!("?{t}")),
        None => (base.clone(), String::new()),
    };
    let cut = head.rfind('/').unwrap();
    format!("{}/{}{}", &head[..cut], db.name(), tail)
}

async fn run_ok(mut c: Command) -> String {
    let o: Output = tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{out}\nstderr:\n{err}",
        o.status
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_invoices_pages_one_day_and_matches_count() {
    let sim = Sim::builder()
        .seed(61)
        .invoices(600)
        .span(
            datetime!(2024-01-15 00:00 UTC),
            datetime!(2024-01-17 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap();
    let day_start = datetime!(2024-01-15 00:00 UTC);
    let day_end = datetime!(2024-01-16 00:00 UTC);
    let expected = sim
        .truth("Invoice")
        .iter()
        .filter(|t| day_start <= t.create_time && t.create_time < day_end)
        .count();
    assert!(
        expected > 200,
        "the day must need several pages: {expected}"
    );
    let mut c = with_qbo(example("page_invoices"), &sim);
    c.args(["2024-01-15", "100"]);
    let out = run_ok(c).await;
    let pages = out.lines().filter(|l| l.starts_with("page ")).count();
    assert_eq!(pages, expected / 100 + 1, "{out}");
    assert!(
        out.contains(&format!("loaded {expected} invoices")),
        "{out}"
    );
    assert!(out.contains(&format!("COUNT(*) says {expected}")), "{out}");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_entity_runs_with_the_full_cli() {
    let sim = Sim::builder()
        .seed(62)
        .vendors(80)
        .span(
            datetime!(2024-01-01 00:00 UTC),
            datetime!(2024-02-01 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap();
    let truth = sim.truth("Vendor");
    // Windows on LastUpdatedTime: cover every vendor's last update, in whole days.
    let last = truth.iter().map(|t| t.last_updated_time).max().unwrap();
    let end = (last.date().next_day().unwrap()).to_string();
    let db = TestDb::new().await;
    let url = db_url(&db);
    let mut c = with_qbo(example("new_entity"), &sim);
    c.env("DATABASE_URL", &url)
        .args(["--start", "2024-01-01", "--end", &end]);
    run_ok(c).await;
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM raw.qb_vendors", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as usize, truth.len());
    let field: String = client
        .query_one(
            "SELECT DISTINCT window_field FROM backfill.windows WHERE pipeline = 'example_vendors_by_update'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(field, "MetaData.LastUpdatedTime");
    // The shared CLI comes with it: the report covers the new pipeline.
    let mut c = example("new_entity");
    c.env("DATABASE_URL", &url).arg("report");
    let out = run_ok(c).await;
    assert!(out.contains("example_vendors_by_update"), "{out}");
    assert!(out.contains("status: OK"), "{out}");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_service_runs_on_its_own_pool_and_token_store() {
    let sim = Sim::builder()
        .seed(63)
        .invoices(300)
        .span(
            datetime!(2024-03-01 00:00 UTC),
            datetime!(2024-03-06 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap();
    let db = TestDb::new().await;
    let mut c = with_qbo(example("embed_service"), &sim);
    c.env("DATABASE_URL", db_url(&db))
        .args(["2024-03-01", "2024-03-06"]);
    let out = run_ok(c).await;
    assert!(out.contains("5 windows done"), "{out}");
    assert!(out.contains("300 inserted"), "{out}");
    assert!(
        out.contains("refresh tokens kept by the service's own store: 1"),
        "{out}"
    );
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM raw.qb_invoices", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 300);
    // The rotated token went to the service's table, not to qb-backfill's default store.
    let default_store: i64 = client
        .query_one(
            "SELECT count(*) FROM backfill.oauth_tokens WHERE refresh_token IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default_store, 0);
    let stored: String = client
        .query_one("SELECT refresh_token FROM my_service.qbo_tokens", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        stored,
        sim.refresh_token(),
        "the newest token is the one the simulator honours"
    );
    sim.shutdown().await.unwrap();
}
