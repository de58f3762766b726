//! `qb-backfill auth …` end to end against qbo-sim: connect with scripted consent (loopback
//! listener and --paste), refusals that store nothing, status and its warnings, revoke.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use qbo_sim::{Consent, SimHandle};
use raw_sink::testing::TestDb;

use crate::common::*;

const RANGE: [&str; 6] = [
    "--entity",
    "Customer",
    "--start",
    "2023-01-01",
    "--end",
    "2023-01-11",
];

/// `qb-backfill ARGS` with the app's settings but no refresh token.
fn auth_command(sim: &SimHandle, url: &str, args: &[&str]) -> Command {
    let mut c = command(sim, url, args);
    c.env_remove("QBO_REFRESH_TOKEN")
        .env("QBO_AUTH_URL", sim.authorize_url())
        .env("QBO_REVOKE_URL", sim.revoke_url());
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `auth connect` and returns it with the consent URL it printed.
async fn start_connect(
    sim: &SimHandle,
    url: &str,
    args: &[&str],
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut all = vec!["auth", "connect", "--no-browser"];
    all.extend(args);
    spawn_printing_url(auth_command(sim, url, &all)).await
}

/// Spawns `c` (stdout, stderr and stdin piped) and reads its stdout up to the consent URL.
/// The child is returned to be waited for by [`finish`].
#[allow(clippy::zombie_processes)]
async fn spawn_printing_url(
    mut c: Command,
) -> (Child, String, BufReader<std::process::ChildStdout>) {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = c.spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "no consent URL printed"
            );
            if let Some(u) = line.trim().strip_prefix("http") {
                return (child, format!("http{u}"), out);
            }
        }
    })
    .await
    .unwrap()
}

/// What the browser does with the consent page: the URL it is redirected to.
async fn consent(url: &str) -> String {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    r.headers()["location"].to_str().unwrap().to_owned()
}

/// Waits for the child; returns its exit code, the rest of its stdout, and its stderr.
async fn finish(
    mut child: Child,
    mut out: BufReader<std::process::ChildStdout>,
) -> (i32, String, String) {
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

async fn tokens_stored(db: &TestDb) -> i64 {
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    match client
        .query_one(
            "SELECT count(*) FROM backfill.oauth_tokens WHERE refresh_token IS NOT NULL",
            &[],
        )
        .await
    {
        Ok(row) => row.get(0),
        // Not migrated yet: nothing stored.
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_stores_a_token_that_a_backfill_then_uses_and_status_shows() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/callback");
    let (child, consent_url, out) = start_connect(&sim, &url, &["--redirect-uri", &redirect]).await;
    assert!(
        consent_url.contains("scope=com.intuit.quickbooks.accounting"),
        "{consent_url}"
    );
    let location = consent(&consent_url).await;
    assert!(location.starts_with(&redirect), "{location}");
    // The browser follows the redirect to the command's loopback listener.
    let page = reqwest::get(&location).await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("close this tab"));
    let (code, stdout, stderr) = finish(child, out).await;
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let realm = sim.realm_id();
    assert!(stdout.contains(&format!("realm {realm}")), "{stdout}");
    assert!(stdout.contains("Next: QBO_REALM_ID="), "{stdout}");
    assert!(!stdout.contains(&sim.refresh_token()) && !stderr.contains(&sim.refresh_token()));
    assert!(!stdout.contains(&sim.client_secret()) && !stderr.contains(&sim.client_secret()));
    assert_eq!(sim.stats().code_exchanges, 1);

    // A backfill with no QBO_REFRESH_TOKEN uses the stored one.
    run_expect(auth_command(&sim, &url, &RANGE), 0).await;
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    let rows: i64 = client
        .query_one("SELECT count(*) FROM raw.qb_customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 120);

    let o = run_expect(auth_command(&sim, &url, &["auth", "status"]), 0).await;
    let (text, _) = super::common::text(&o);
    assert!(
        text.contains(&realm) && text.contains("refresh token expires"),
        "{text}"
    );
    assert!(text.contains(&sim.client_id()), "{text}");
    assert!(!text.contains("WARNING"), "{text}");

    // An expiry within 30 days: status warns and exits 1, and a run's log warns.
    client
        .execute(
            "UPDATE backfill.oauth_tokens SET hard_expires_at = now() + interval '10 days'",
            &[],
        )
        .await
        .unwrap();
    let o = run_expect(
        auth_command(&sim, &url, &["auth", "status", "--realm", &realm]),
        1,
    )
    .await;
    let (text, _) = super::common::text(&o);
    assert!(
        text.contains("WARNING") && text.contains("expires in 9 days"),
        "{text}"
    );
    let mut again = auth_command(&sim, &url, &RANGE);
    again.arg("--force");
    let o = run_expect(again, 0).await;
    let (_, log) = super::common::text(&o);
    assert!(log.contains("token_expiry_near"), "{log}");

    // Revoke: Intuit forgets the grant, the token goes, the next run exits 3 with the hint.
    run_expect(
        auth_command(&sim, &url, &["auth", "revoke", "--realm", &realm]),
        0,
    )
    .await;
    assert_eq!(sim.stats().revocations, 1);
    assert_eq!(tokens_stored(&db).await, 0);
    let mut after = auth_command(&sim, &url, &RANGE);
    after.arg("--force");
    let o = run_expect(after, 3).await;
    let (_, err) = super::common::text(&o);
    assert!(err.contains("auth connect"), "{err}");
    run_expect(auth_command(&sim, &url, &["auth", "status"]), 3).await;
    sim.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_mismatch_and_denial_are_refused_with_nothing_stored() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);

    // A redirect that does not answer this request (another state): refused.
    let (mut child, consent_url, out) = start_connect(&sim, &url, &["--paste"]).await;
    let location = consent(&consent_url).await;
    let forged = regex_free_replace_state(&location, "forged-state");
    writeln!(child.stdin.take().unwrap(), "{forged}").unwrap();
    let (code, stdout, stderr) = finish(child, out).await;
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("state does not match"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{stderr}"
    );
    assert_eq!(sim.stats().code_exchanges, 0);
    assert_eq!(tokens_stored(&db).await, 0);

    // The person clicks Cancel.
    sim.set_consent(Consent::Deny);
    let (mut child, consent_url, out) = start_connect(&sim, &url, &["--paste"]).await;
    let location = consent(&consent_url).await;
    writeln!(child.stdin.take().unwrap(), "{location}").unwrap();
    let (code, _, stderr) = finish(child, out).await;
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("access_denied") && stderr.contains("approve"),
        "{stderr}"
    );
    assert_eq!(tokens_stored(&db).await, 0);

    // The port of the redirect URI is taken: said at once, before Intuit is involved.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let o = run_expect(
        auth_command(
            &sim,
            &url,
            &[
                "auth",
                "connect",
                "--no-browser",
                "--redirect-uri",
                &format!("http://127.0.0.1:{port}/cb"),
            ],
        ),
        2,
    )
    .await;
    let (_, err) = super::common::text(&o);
    assert!(err.contains("in use"), "{err}");

    // Wrong app secret: invalid_client, exit 2, the secret never printed.
    sim.set_consent(Consent::Approve);
    let mut c = auth_command(&sim, &url, &["auth", "connect", "--no-browser", "--paste"]);
    c.env("QBO_CLIENT_SECRET", "wrong-secret-XYZ");
    let (mut child, consent_url, out) = spawn_printing_url(c).await;
    let location = consent(&consent_url).await;
    writeln!(child.stdin.take().unwrap(), "{location}").unwrap();
    let (code, _, stderr) = finish(child, out).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("invalid_client") && stderr.contains("QBO_CLIENT_SECRET"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-secret-XYZ"), "{stderr}");
    assert_eq!(tokens_stored(&db).await, 0);
    sim.shutdown().await.unwrap();
}

/// `url` with its `state` replaced.
fn regex_free_replace_state(url: &str, state: &str) -> String {
    let mut u = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "state" {
                (k, state.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u.to_string()
}

/// When the sim answered the first request of `endpoints` logged since the last reset.
fn first_answer(sim: &SimHandle, endpoints: &[&str]) -> time::OffsetDateTime {
    let first = sim
        .requests()
        .into_iter()
        .find(|r| endpoints.contains(&r.endpoint.as_str()) && r.status == 200)
        .expect("a successful API request");
    first.at + time::Duration::microseconds(i64::try_from(first.elapsed_us).unwrap())
}

async fn last_success(db: &TestDb) -> Option<time::OffsetDateTime> {
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    client
        .query_one("SELECT last_success_at FROM backfill.oauth_tokens", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_records_its_last_successful_call_and_warns_of_expiry_in_its_log() {
    let sim = sim().await;
    let db = TestDb::new().await;
    let url = db_url(&db);
    let secrets = [sim.refresh_token(), sim.client_secret()];
    // A run whose every query fails still refreshes the token: that is no successful call.
    run_expect(command(&sim, &url, &["auth", "status"]), 3).await;
    sim.script(vec![qbo_sim::ScriptedFault::Status(400); 64]);
    let o = output(command(&sim, &url, &RANGE)).await;
    assert_ne!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(sim.stats().endpoint_total("token") > 0);
    assert_eq!(last_success(&db).await, None, "a refresh is not a success");
    sim.script(Vec::new());

    let with_range = |cmd: &str| -> Vec<String> {
        match cmd {
            "backfill" => RANGE.iter().map(|s| (*s).to_owned()).collect(),
            "sync" => ["--entity", "Customer", "sync"].map(str::to_owned).to_vec(),
            "reconcile" => ["--entity", "Customer", "reconcile"]
                .map(str::to_owned)
                .to_vec(),
            "reports" => [
                "reports",
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-31",
                "--report",
                "ProfitAndLoss",
            ]
            .map(str::to_owned)
            .to_vec(),
            _ => [
                "check-books",
                "--start",
                "2023-01-01",
                "--end",
                "2023-01-31",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    };
    let sink = db.sink().await;
    let client = sink.pool().get().await.unwrap();
    for cmd in ["backfill", "sync", "reconcile", "reports", "check-books"] {
        // Each command is started with its connection 10 days from its hard expiry and no
        // success recorded.
        client
            .execute(
                "UPDATE backfill.oauth_tokens SET last_success_at = NULL, \
                 hard_expires_at = now() + interval '10 days'",
                &[],
            )
            .await
            .unwrap();
        sim.reset_stats();
        let mut args = with_range(cmd);
        if cmd == "backfill" {
            // The range is the failed run's.
            args.push("--force".to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = output(command(&sim, &url, &args)).await;
        let (out, log) = text(&o);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "{cmd}: {:?}\n{out}\n{log}",
            o.status
        );
        // Its log (at the default level) warns of the expiry, and prints nothing secret.
        assert!(log.contains("token_expiry_near"), "{cmd}: {log}");
        assert!(log.contains("expires in 9 days"), "{cmd}: {log}");
        for s in &secrets {
            assert!(
                !log.contains(s.as_str()) && !out.contains(s.as_str()),
                "{cmd}"
            );
        }
        let first = first_answer(&sim, &["query", "cdc", "report"]);
        let recorded = last_success(&db)
            .await
            .unwrap_or_else(|| panic!("{cmd}: none"));
        assert!(
            recorded >= first,
            "{cmd}: {recorded} before the first answer {first}"
        );
    }
    // The last refresh restated the hard expiry: status is fine, and shows the success.
    let o = run_expect(command(&sim, &url, &["auth", "status"]), 0).await;
    let (text, _) = super::common::text(&o);
    let shown = text
        .split("last success ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .unwrap_or("-");
    assert!(shown.starts_with("20"), "{text}");
    sim.shutdown().await.unwrap();
}
