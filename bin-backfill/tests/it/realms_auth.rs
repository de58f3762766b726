//! `auth` for companies of another Intuit app (issue 15): `auth connect --app` with its secret
//! from `QBO_APPS_FILE`, and revoke / disconnect with the app the company was connected with.

use std::path::PathBuf;
use std::process::Command;

use qbo_sim::{Consent, Sim, SimHandle};
use raw_sink::testing::TestDb;
use time::macros::datetime;

use super::realms::{APP_B, APP_B_SECRET, REALMS, count, many};
use crate::common::*;

/// Two companies; the simulator knows a second app.
async fn two_apps() -> SimHandle {
    Sim::builder()
        .seed(8)
        .realm_id(REALMS[0])
        .extra_realm(REALMS[1], 9)
        .extra_app(APP_B, APP_B_SECRET)
        .customers(30)
        .span(
            datetime!(2023-01-01 00:00 UTC),
            datetime!(2023-01-11 00:00 UTC),
        )
        .spawn()
        .await
        .unwrap()
}

/// A `QBO_APPS_FILE` with the second app's secret.
fn apps_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("apps.json");
    std::fs::write(&path, format!("{{\"{APP_B}\": \"{APP_B_SECRET}\"}}")).unwrap();
    path
}

/// `qb-backfill ARGS` with the primary app's settings, the consent and revoke URLs, and no
/// refresh token or realm.
fn auth_cmd(sim: &SimHandle, url: &str, args: &[&str]) -> Command {
    let mut c = many(sim, url, args);
    c.env("QBO_AUTH_URL", sim.authorize_url())
        .env("QBO_REVOKE_URL", sim.revoke_url());
    c
}

const BACKFILL: [&str; 6] = [
    "--entity",
    "Customer",
    "--start",
    "2023-01-01",
    "--end",
    "2023-01-11",
];

/// Runs `auth connect --paste` with `c`'s settings, giving it the URL the simulator's consent
/// page redirects to; returns the exit code and both outputs.
async fn connect_pasting(mut c: Command) -> (i32, String, String) {
    use std::io::{BufRead, BufReader, Write};
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let consent_url = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                return (None, out);
            }
            if let Some(u) = line.trim().strip_prefix("http") {
                return (Some(format!("http{u}")), out);
            }
        }
    })
    .await
    .unwrap();
    let (consent_url, mut out) = consent_url;
    if let Some(u) = consent_url {
        let r = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&u)
            .send()
            .await
            .unwrap();
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{location}").unwrap();
    }
    tokio::task::spawn_blocking(move || {
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status = child.wait().unwrap();
        (status.code().unwrap_or(-1), rest, err)
    })
    .await
    .unwrap()
}

async fn stored_app(db: &TestDb, realm: &str) -> Option<String> {
    let sink = db.sink().await;
    let c = sink.pool().get().await.unwrap();
    c.query_opt(
        "SELECT client_id FROM backfill.oauth_tokens WHERE realm_id = $1 AND refresh_token IS NOT NULL",
        &[&realm],
    )
    .await
    .unwrap()
    .and_then(|r| r.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_with_another_app_records_it_and_revoke_uses_that_app() {
    let sim = two_apps().await;
    sim.set_consent(Consent::ApproveRealm(REALMS[1].to_owned()));
    let db = TestDb::new().await;
    let url = db_url(&db);
    let dir = tempfile::tempdir().unwrap();
    let apps = apps_file(&dir);
    let connect = ["auth", "connect", "--paste", "--no-browser", "--app", APP_B];

    // Without the app's secret: one line naming the app and QBO_APPS_FILE, exit 2, nothing
    // sent to Intuit, nothing stored, no secret shown.
    let o = run_expect(auth_cmd(&sim, &url, &connect), 2).await;
    let (out, err) = text(&o);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains(APP_B) && errors[0].contains("QBO_APPS_FILE"),
        "{err}"
    );
    assert!(!out.contains("http"), "no consent URL: {out}");
    assert_eq!(sim.stats().authorizations, 0);

    // With it: the consent is asked for that app, the token stored under the realm with it.
    let mut c = auth_cmd(&sim, &url, &connect);
    c.env("QBO_APPS_FILE", &apps);
    let (code, out, err) = connect_pasting(c).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&format!("realm {}", REALMS[1])), "{out}");
    assert!(
        out.contains(APP_B) && out.contains("QBO_APPS_FILE"),
        "{out}"
    );
    for s in [&out, &err] {
        assert!(!s.contains(APP_B_SECRET) && !s.contains(&sim.client_secret()));
    }
    assert_eq!(stored_app(&db, REALMS[1]).await.as_deref(), Some(APP_B));

    // A run of that company uses the app (its token refreshes only with it).
    let mut run = many(&sim, &url, &BACKFILL);
    run.env("QBO_REALM_ID", REALMS[1])
        .env("QBO_APPS_FILE", &apps);
    run_expect(run, 0).await;
    assert_eq!(sim.stats().token_failures, 0, "{:?}", sim.stats());
    let rows = count(
        &db,
        "SELECT count(*) FROM raw.qb_customers WHERE realm_id = $1",
        REALMS[1],
    )
    .await;
    assert_eq!(rows, 30);

    // Revoke: with that app's credentials (the simulator refuses another app's revoke).
    let mut revoke = auth_cmd(&sim, &url, &["auth", "revoke", "--realm", REALMS[1]]);
    revoke.env("QBO_APPS_FILE", &apps);
    let o = run_expect(revoke, 0).await;
    let (out, _) = text(&o);
    assert!(out.contains(APP_B), "{out}");
    let by_client = sim.stats().revocations_by_client;
    assert_eq!(by_client.get(APP_B), Some(&1), "{by_client:?}");
    assert_eq!(by_client.len(), 1, "{by_client:?}");
    assert_eq!(stored_app(&db, REALMS[1]).await, None);

    // The next run of the company exits 3 with the reconnect hint.
    let mut run = many(&sim, &url, &BACKFILL);
    run.env("QBO_REALM_ID", REALMS[1])
        .env("QBO_APPS_FILE", &apps)
        .arg("--force");
    let o = run_expect(run, 3).await;
    let (_, err) = text(&o);
    assert!(err.contains("auth connect"), "{err}");
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_of_a_company_of_another_app_uses_that_app_or_refuses() {
    let sim = Sim::builder()
        .seed(8)
        .realm_id(REALMS[0])
        .extra_realm(REALMS[1], 9)
        .extra_app(APP_B, APP_B_SECRET)
        .realm_app(REALMS[1], APP_B)
        .customers(30)
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
    let dir = tempfile::tempdir().unwrap();
    let apps = apps_file(&dir);
    let both = [
        "--entity",
        "Customer",
        "--start",
        "2023-01-01",
        "--end",
        "2023-01-11",
        "--realm",
        REALMS[0],
        "--realm",
        REALMS[1],
    ];
    // Both companies backfilled, each with its own app.
    let mut run = many(&sim, &url, &both);
    run.env("QBO_APPS_FILE", &apps);
    run_expect(run, 0).await;
    let disconnect = ["auth", "disconnect", "--realm", REALMS[1]];

    // Without the app's secret: refused in one line naming the company, its app and
    // QBO_APPS_FILE, before anything is sent; the token stays.
    let o = run_expect(auth_cmd(&sim, &url, &disconnect), 2).await;
    let (_, err) = text(&o);
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains(REALMS[1])
            && errors[0].contains(APP_B)
            && errors[0].contains("QBO_APPS_FILE"),
        "{err}"
    );
    assert_eq!(sim.stats().endpoint_total("revoke"), 0);
    assert_eq!(stored_app(&db, REALMS[1]).await.as_deref(), Some(APP_B));

    // With it: the grant is revoked by its own app, at Intuit, then the token is removed.
    let mut c = auth_cmd(&sim, &url, &disconnect);
    c.env("QBO_APPS_FILE", &apps);
    let o = run_expect(c, 0).await;
    let (out, err) = text(&o);
    assert!(out.contains("Offboarding"), "{out}");
    assert!(!err.contains("revoke_refused_offboarding_anyway"), "{err}");
    let st = sim.stats();
    assert_eq!(st.revocations_by_client.get(APP_B), Some(&1), "{st:?}");
    assert_eq!(st.revocations, 1);
    assert_eq!(stored_app(&db, REALMS[1]).await, None);

    // The next run for both companies: the disconnected one exits 3 with the reconnect hint,
    // the other is loaded again.
    let mut run = many(&sim, &url, &both);
    run.arg("--force");
    run.env("QBO_APPS_FILE", &apps);
    let o = run_expect(run, 3).await;
    let (_, err) = text(&o);
    let line = err
        .lines()
        .find(|l| l.contains(&format!("realm {}: error", REALMS[1])))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("auth connect"), "{line}");
    let rows = count(
        &db,
        "SELECT count(*) FROM raw.qb_customers WHERE realm_id = $1",
        REALMS[0],
    )
    .await;
    assert_eq!(rows, 30);

    // A sync of both: the same worst exit (3) and hint, the other company synced.
    let mut sync = many(
        &sim,
        &url,
        &[
            "--entity", "Customer", "--realm", REALMS[0], "--realm", REALMS[1], "sync",
        ],
    );
    sync.env("QBO_APPS_FILE", &apps);
    let o = run_expect(sync, 3).await;
    let (out, err) = text(&o);
    assert!(out.contains(&format!("of realm {}", REALMS[0])), "{out}");
    let line = err
        .lines()
        .find(|l| l.contains(&format!("realm {}: error", REALMS[1])))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("auth connect"), "{line}");
    let synced = count(
        &db,
        "SELECT count(*) FROM backfill.syncs WHERE realm_id = $1 AND status = 'succeeded'",
        REALMS[0],
    )
    .await;
    assert_eq!(synced, 1);
    sim.shutdown().await.unwrap();
}
