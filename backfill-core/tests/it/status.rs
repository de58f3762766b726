//! The status page and `/metrics` against a ledger made by real backfills on `qbo-sim`: every
//! figure shown must equal direct SQL; the access rule; and the page in a real headless
//! browser (Debian's chromium and chromium-driver).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use backfill_core::{Customer, ENTITIES, Entity, Invoice, Item, WindowField};
use qbo_sim::{Sim, SimHandle};
use raw_sink::testing::TestDb;
use raw_sink::{Sink, WindowScope, WindowSpan};
use status_page::{Access, Scope, Source};
use time::macros::datetime;

use crate::common::*;

const EVIL: &str = "QBO 500 <script>alert('x')</script> & \"peer\"";

/// A ledger with windows in every state a page shows: customers done and verified, items done
/// unverified (`--no-verify`), invoices with a window failed (by a peer, with markup in its
/// error), and a pending invoice window no run has reached.
pub(crate) async fn ledger() -> (SimHandle, TestDb, Sink) {
    let sim = sim(Sim::builder()
        .seed(31)
        .customers(60)
        .items(30)
        .invoices(120)
        .span(
            datetime!(2023-02-01 00:00 UTC),
            datetime!(2023-02-05 00:00 UTC),
        ))
    .await;
    let (db, sink) = db().await;
    let client = client(&sim);
    run::<Customer>(&client, &sink, &config("2023-02-01", "2023-02-05", "c")).await;
    let mut items = config("2023-02-01", "2023-02-05", "i");
    items.verify = false;
    run::<Item>(&client, &sink, &items).await;
    let scope = WindowScope::new(
        Invoice::PIPELINE,
        sim.realm_id(),
        WindowField::CreateTime.as_str(),
    );
    let ids = sink
        .ledger()
        .ensure_windows(
            &scope,
            &[
                WindowSpan::new(
                    datetime!(2023-02-02 00:00 UTC),
                    datetime!(2023-02-03 00:00 UTC),
                ),
                WindowSpan::new(
                    datetime!(2023-03-01 00:00 UTC),
                    datetime!(2023-03-02 00:00 UTC),
                ),
            ],
        )
        .await
        .unwrap();
    sink.pool()
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE backfill.windows SET status = 'failed', last_error = $2, \
             finished_at = now() + interval '1 hour' WHERE id = $1",
            &[&ids[0].id.get(), &EVIL],
        )
        .await
        .unwrap();
    run::<Invoice>(&client, &sink, &config("2023-02-01", "2023-02-05", "inv")).await;
    (sim, db, sink)
}

fn scope() -> Scope {
    Scope {
        sources: ENTITIES
            .iter()
            .map(|e| Source::new(e.pipeline, e.name, e.table))
            .collect(),
        runs_limit: 50,
    }
}

async fn serve(sink: &Sink, listen: &str, access: Access) -> SocketAddr {
    let server = status_page::bind(listen.parse().unwrap(), sink.clone(), scope(), access)
        .await
        .unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

pub(crate) async fn serve_loopback(sink: &Sink) -> SocketAddr {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    serve(
        sink,
        "127.0.0.1:0",
        Access::for_listen(listen, None).unwrap(),
    )
    .await
}

pub(crate) async fn get(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, resp.text().await.unwrap())
}

async fn sql_counts(sink: &Sink, sql: &str) -> BTreeMap<String, i64> {
    sink.pool()
        .get()
        .await
        .unwrap()
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect()
}

fn occurrences(page: &str, needle: &str) -> i64 {
    i64::try_from(page.matches(needle).count()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_what_the_ledger_holds() {
    let (sim, _db, sink) = ledger().await;
    let addr = serve_loopback(&sink).await;
    let (status, ctype, page) = get(&format!("http://{addr}/"), None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(page.contains("<meta name=\"viewport\""));
    assert!(
        !page.contains("src=\"http") && !page.contains("href=\"http"),
        "external asset"
    );

    // One heatmap cell per ledger window, with the ledger's status.
    let by_status = sql_counts(
        &sink,
        "SELECT status, count(*) FROM backfill.windows GROUP BY status",
    )
    .await;
    assert!(by_status.len() >= 3, "{by_status:?}");
    for (s, n) in &by_status {
        assert_eq!(
            occurrences(&page, &format!("data-status=\"{s}\"")),
            *n,
            "{s}"
        );
    }
    assert_eq!(
        occurrences(&page, "data-status="),
        by_status.values().sum::<i64>()
    );
    // Windows done without a COUNT compared say so (items ran with --no-verify; a COUNT the
    // loop took anyway still verifies), never "match".
    let unverified = sql_counts(
        &sink,
        "SELECT 'unverified', count(*) FROM backfill.windows \
         WHERE status = 'done' AND (NOT verified OR source_count IS NULL)",
    )
    .await["unverified"];
    assert_eq!(
        occurrences(&page, "data-verification=\"unverified\""),
        unverified
    );
    // Every run, with its rows.
    let runs = sink
        .pool()
        .get()
        .await
        .unwrap()
        .query("SELECT id, rows, api_calls FROM backfill.runs", &[])
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    for r in &runs {
        let id: i64 = r.get(0);
        let head = format!("<tr data-run=\"{id}\"><td>{id}</td>");
        let at = page.find(&head).unwrap_or_else(|| panic!("run {id}"));
        let row = &page[at..at + page[at..].find("</tr>").unwrap()];
        // The calls the run spent, as the ledger holds them (a run of this fixture spends some).
        let calls: i64 = r.get(2);
        assert!(calls > 0, "run {id} spent no call");
        assert!(
            row.contains(&format!("data-api-calls>{calls}</td>")),
            "run {id}: {row}"
        );
    }
    // Triggers by status.
    let triggers = sql_counts(
        &sink,
        "SELECT status, count(*) FROM backfill.triggers GROUP BY status",
    )
    .await;
    for (s, n) in &triggers {
        assert!(
            page.contains(&format!("data-trigger-status=\"{s}\"><b>{n}</b>")),
            "trigger status {s}"
        );
    }
    // Raw table totals.
    for (table, n) in sql_counts(
        &sink,
        "SELECT 'raw.qb_customers', count(*) FROM raw.qb_customers UNION ALL \
         SELECT 'raw.qb_invoices', count(*) FROM raw.qb_invoices",
    )
    .await
    {
        assert!(page.contains(&format!("data-rows>{n}</td>")), "{table} {n}");
        assert!(page.contains(&format!("data-table=\"{table}\"")));
    }
    // The failed window is listed as its run's problem, its error escaped, never as markup.
    assert!(page.contains("id=\"problems\""));
    assert!(
        !page.contains("<script>"),
        "unescaped text from the database"
    );
    assert!(page.contains(
        "QBO 500 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;peer&quot;"
    ));
    // No secret: neither the refresh token nor the client secret.
    assert!(!page.contains(&sim.refresh_token()));
    assert!(!page.contains(&sim.client_secret()));
    sim.shutdown().await.unwrap();
}

/// `name{labels} value` samples of an OpenMetrics text; panics on any other line shape and
/// when `# EOF` is not the last line.
pub(crate) fn parse_openmetrics(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "no # EOF at the end");
    let mut samples = Vec::new();
    for line in &lines[..lines.len() - 1] {
        if let Some(meta) = line.strip_prefix("# ") {
            let kind = meta.split(' ').next().unwrap();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kind),
                "bad line {line:?}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("{line:?}"));
                let labels = inner
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap();
                        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                        (
                            k.to_owned(),
                            v.unwrap_or_else(|| panic!("{line:?}")).to_owned(),
                        )
                    })
                    .collect();
                (n, labels)
            }
            None => (series, BTreeMap::new()),
        };
        assert!(
            name.starts_with("qb_backfill_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

pub(crate) fn sample(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_equal_the_ledger() {
    let (sim, _db, sink) = ledger().await;
    let realm = sim.realm_id();
    let addr = serve_loopback(&sink).await;
    let (status, ctype, text) = get(&format!("http://{addr}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let samples = parse_openmetrics(&text);
    let c = sink.pool().get().await.unwrap();
    for e in [Customer::PIPELINE, Item::PIPELINE, Invoice::PIPELINE] {
        for state in ["pending", "running", "done", "failed", "mismatch"] {
            let n: i64 = c
                .query_one(
                    "SELECT count(*) FROM backfill.windows WHERE pipeline = $1 AND realm_id = $2 AND status = $3",
                    &[&e, &realm, &state],
                )
                .await
                .unwrap()
                .get(0);
            let labels = [("pipeline", e), ("realm", realm.as_str()), ("state", state)];
            #[allow(clippy::cast_precision_loss)]
            let expected = n as f64;
            assert_eq!(
                sample(&samples, "qb_backfill_windows", &labels),
                Some(expected),
                "{e} {state}"
            );
        }
        let last = c
            .query_one(
                "SELECT rows, status, extract(epoch FROM finished_at - started_at)::float8, api_calls \
                 FROM backfill.runs WHERE pipeline = $1 AND realm_id = $2 ORDER BY started_at DESC, id DESC LIMIT 1",
                &[&e, &realm],
            )
            .await
            .unwrap();
        let labels = [("pipeline", e), ("realm", realm.as_str())];
        #[allow(clippy::cast_precision_loss)]
        let rows = last.get::<_, i64>(0) as f64;
        assert_eq!(
            sample(&samples, "qb_backfill_last_run_rows", &labels),
            Some(rows)
        );
        #[allow(clippy::cast_precision_loss)]
        let calls = last.get::<_, i64>(3) as f64;
        assert_eq!(
            sample(&samples, "qb_backfill_last_run_api_calls", &labels),
            Some(calls)
        );
        let st: String = last.get(1);
        let with_status = [
            ("pipeline", e),
            ("realm", realm.as_str()),
            ("status", st.as_str()),
        ];
        assert_eq!(
            sample(&samples, "qb_backfill_last_run_status", &with_status),
            Some(1.0)
        );
        let d = sample(&samples, "qb_backfill_last_run_duration_seconds", &labels).unwrap();
        assert!((d - last.get::<_, f64>(2)).abs() < 1e-3, "{d}");
        let success: Option<f64> = c
            .query_one(
                "SELECT extract(epoch FROM max(finished_at))::float8 FROM backfill.runs \
                 WHERE pipeline = $1 AND realm_id = $2 AND status = 'succeeded'",
                &[&e, &realm],
            )
            .await
            .unwrap()
            .get(0);
        let got = sample(
            &samples,
            "qb_backfill_last_success_timestamp_seconds",
            &labels,
        );
        match (success, got) {
            (Some(s), Some(g)) => assert!((s - g).abs() < 1e-3, "{e}: {s} vs {g}"),
            (None, None) => {}
            other => panic!("{e}: last success {other:?}"),
        }
    }
    // The partial invoice run has no success; rows per raw table equal COUNT(*).
    assert!(
        sample(
            &samples,
            "qb_backfill_last_success_timestamp_seconds",
            &[("pipeline", Invoice::PIPELINE)]
        )
        .is_none()
    );
    for (pipeline, table) in [
        (Customer::PIPELINE, "raw.qb_customers"),
        (Item::PIPELINE, "raw.qb_items"),
        (Invoice::PIPELINE, "raw.qb_invoices"),
    ] {
        let n: i64 = c
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE realm_id = $1"),
                &[&realm],
            )
            .await
            .unwrap()
            .get(0);
        #[allow(clippy::cast_precision_loss)]
        let expected = n as f64;
        assert!(n > 0);
        assert_eq!(
            sample(
                &samples,
                "qb_backfill_raw_rows",
                &[("pipeline", pipeline), ("table", table)]
            ),
            Some(expected),
            "{table}"
        );
    }
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_a_non_loopback_address() {
    let (_db, sink) = db().await;
    let public: SocketAddr = "0.0.0.0:0".parse().unwrap();
    let refused = Access::for_listen(public, None).unwrap_err();
    assert!(
        refused.to_string().contains("--auth-token-file"),
        "{refused}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "t0ken-for-the-page\n").unwrap();
    let access = Access::for_listen(public, Some(&file)).unwrap();
    let addr = serve(&sink, "0.0.0.0:0", access).await;
    let base = format!("http://127.0.0.1:{}", addr.port());
    for path in ["/", "/metrics"] {
        let url = format!("{base}{path}");
        assert_eq!(get(&url, None).await.0, 401, "{path} without a token");
        assert_eq!(
            get(&url, Some("t0ken-for-the-pag")).await.0,
            401,
            "{path} wrong token"
        );
        assert_eq!(
            get(&url, Some("t0ken-for-the-page")).await.0,
            200,
            "{path} with the token"
        );
    }
    let (_, _, body) = get(&format!("{base}/"), None).await;
    assert!(!body.contains("t0ken"));
}

/// A free loopback port (bound, then released for chromedriver).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, killed when dropped.
pub(crate) struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver(port: u16) -> Driver {
    let install =
        "install them with `apt-get install -y chromium chromium-driver` (Debian; .ci/run does)";
    for tool in ["chromium", "chromedriver"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is not installed: the status page's browser test needs it; {install}"
        );
    }
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting chromedriver: {e}; {install}"));
    Driver(child)
}

/// A headless chromium session through chromedriver on a free port; the driver and the profile
/// directory live as long as the returned guards.
pub(crate) async fn headless_browser() -> (Driver, tempfile::TempDir, fantoccini::Client) {
    let port = free_port();
    let driver = start_chromedriver(port);
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--no-first-run", "--disable-sync",
                format!("--user-data-dir={}", profile.path().display()),
                "--window-size=1280,1600",
            ]
        }),
    );
    let webdriver = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        match fantoccini::ClientBuilder::rustls()
            .unwrap()
            .capabilities(caps.clone())
            .connect(&webdriver)
            .await
        {
            Ok(c) => return (driver, profile, c),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    panic!("chromedriver did not accept a session within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_in_a_headless_browser_matches_the_ledger() {
    let (sim, _db, sink) = ledger().await;
    let addr = serve_loopback(&sink).await;
    let (_driver, _profile, browser) = headless_browser().await;
    browser.goto(&format!("http://{addr}/")).await.unwrap();
    let cells = browser
        .find_all(fantoccini::Locator::Css("[data-status]"))
        .await
        .unwrap();
    let mut shown: BTreeMap<String, i64> = BTreeMap::new();
    for c in &cells {
        let status = c.attr("data-status").await.unwrap().unwrap();
        assert!(
            c.attr("title")
                .await
                .unwrap()
                .is_some_and(|t| t.contains(&status))
        );
        *shown.entry(status).or_default() += 1;
    }
    let ledger = sql_counts(
        &sink,
        "SELECT status, count(*) FROM backfill.windows GROUP BY status",
    )
    .await;
    assert_eq!(shown, ledger);
    // The failed window's error is text on the page, not a script that ran.
    let problems = browser
        .find(fantoccini::Locator::Css("#problems"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(problems.contains(EVIL), "{problems}");
    let png = browser.screenshot().await.unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("status-page.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    browser.close().await.unwrap();
    sim.shutdown().await.unwrap();
}
