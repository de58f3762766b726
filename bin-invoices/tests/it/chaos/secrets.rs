//! Secrets under chaos: no secret value in anything the processes print (debug logs included),
//! the token file stays 0600 even when a process is killed while rotating it, and a plain-http
//! QBO URL is refused unless it points at loopback or QBO_ALLOW_INSECURE_HTTP=true says so.

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use qbo_sim::{Rotation, Sim, SimBuilder};
use time::macros::datetime;

use super::*;

const ARGS: &[&str] = &[
    "--start",
    "2023-10-01",
    "--end",
    "2023-10-06",
    "--page-size",
    "20",
];

fn company() -> SimBuilder {
    Sim::builder()
        .seed(111)
        .invoices(250)
        .span(
            datetime!(2023-10-01 00:00 UTC),
            datetime!(2023-10-06 00:00 UTC),
        )
        .requests_per_min(0)
        .max_concurrency(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_file_stays_private_and_logs_hold_no_secret_across_kills() {
    // Short-lived access tokens and rotation on every refresh: the file is rewritten often.
    let sim = company()
        .latency(Duration::from_millis(15), Duration::ZERO)
        .access_token_ttl(Duration::from_secs(2))
        .rotation(Rotation::EveryRefresh)
        .old_refresh_token_grace(Some(Duration::from_secs(3600)))
        .spawn()
        .await
        .unwrap();
    let initial_refresh = sim.refresh_token();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens.json");
    let store = format!("--token-store=file:{}", token_file.display());
    let (_db, url, sink) = fresh_db().await;
    let mut outputs = Vec::new();
    for at in [150u64, 400, 700] {
        let mut c = pipeline(&sim, &url, ARGS);
        c.arg(&store).env("RUST_LOG", "debug");
        let mut child = spawn(c);
        tokio::time::sleep(Duration::from_millis(at)).await;
        child.kill();
        outputs.push(child.wait().await.text());
    }
    let mut c = pipeline(&sim, &url, ARGS);
    c.arg(&store).env("RUST_LOG", "debug");
    let last = spawn(c).wait().await;
    assert!(matches!(last.code, Some(0 | 4)), "{}", last.stderr);
    outputs.push(last.text());
    assert_ledger_settled(&sink).await;
    let (table, truth) = payload_hashes(&sink, &sim).await;
    assert_eq!(table, truth);

    // Every file the store ever wrote (the store and any temporary left by a kill) is 0600.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        files += 1;
    }
    assert!(files >= 1 && token_file.exists());
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&token_file).unwrap()).unwrap();
    let stored = stored[sim.realm_id().as_str()].as_str().unwrap().to_owned();
    assert_eq!(
        stored,
        sim.refresh_token(),
        "the newest refresh token is kept"
    );

    let mut secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    secrets.push(stored);
    assert_no_secrets(&outputs, &secrets);
    sim.shutdown().await.unwrap();
}

/// An address of this machine that is not loopback (the interface of the default route).
fn non_loopback_ip() -> IpAddr {
    for probe in ["192.0.2.1:9", "10.255.255.255:9", "8.8.8.8:53"] {
        let Ok(sock) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
            continue;
        };
        // A UDP connect sends nothing; it only picks the route and the local address.
        if sock.connect(probe).is_ok()
            && let Ok(local) = sock.local_addr()
            && !local.ip().is_loopback()
            && !local.ip().is_unspecified()
        {
            return local.ip();
        }
    }
    panic!("this machine has no non-loopback address: the plain-http test needs one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused_unless_loopback_or_explicitly_allowed() {
    let sim = company()
        .host(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        .spawn()
        .await
        .unwrap();
    let port = sim.addr().port();
    let ip = non_loopback_ip();
    let remote_base = format!("http://{ip}:{port}");
    let remote_token = format!("http://{ip}:{port}/oauth2/v1/tokens/bearer");

    // Refused: exit 2, one line naming https, nothing written.
    let (_db, url, sink) = fresh_db().await;
    let mut c = pipeline(&sim, &url, ARGS);
    c.env("QBO_BASE_URL", &remote_base)
        .env("QBO_TOKEN_URL", &remote_token);
    let refused = spawn(c).wait().await;
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("https"), "{}", refused.stderr);
    assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    assert!(!has_table(&sink, "backfill.windows").await);
    assert_eq!(sim.stats().endpoint_total("query"), 0);
    assert_eq!(sim.stats().endpoint_total("token"), 0);

    // The token URL alone is checked too.
    let mut c = pipeline(&sim, &url, ARGS);
    c.env("QBO_TOKEN_URL", &remote_token);
    assert_eq!(spawn(c).wait().await.code, Some(2));

    // Allowed explicitly (a simulator on a container network): the run goes through.
    let mut c = pipeline(&sim, &url, ARGS);
    c.env("QBO_BASE_URL", &remote_base)
        .env("QBO_TOKEN_URL", &remote_token)
        .env("QBO_ALLOW_INSECURE_HTTP", "true");
    let allowed = spawn(c).wait().await;
    assert_eq!(allowed.code, Some(0), "{}", allowed.stderr);
    let (table, truth) = payload_hashes(&sink, &sim).await;
    assert_eq!(table, truth);

    // Loopback by name is allowed without the switch.
    let (_db2, url2, sink2) = fresh_db().await;
    let mut c = pipeline(&sim, &url2, ARGS);
    c.env("QBO_BASE_URL", format!("http://localhost:{port}"))
        .env(
            "QBO_TOKEN_URL",
            format!("http://localhost:{port}/oauth2/v1/tokens/bearer"),
        );
    let local = spawn(c).wait().await;
    assert_eq!(local.code, Some(0), "{}", local.stderr);
    let (table, truth) = payload_hashes(&sink2, &sim).await;
    assert_eq!(table, truth);
    sim.shutdown().await.unwrap();
}

const TOKEN_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// Every refresh token value the table holds (ciphertext when a key is set).
async fn stored_tokens(sink: &raw_sink::Sink) -> Vec<String> {
    let c = sink.pool().get().await.unwrap();
    c.query(
        "SELECT refresh_token FROM backfill.oauth_tokens WHERE refresh_token IS NOT NULL",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<_, String>(0))
    .collect()
}

/// Issue 12 item 11: the database token store at `RUST_LOG=trace` (the PostgreSQL driver logs
/// bound parameters at debug) prints no secret; with `QBO_TOKEN_KEY` the table never holds the
/// token in plain text (a plain one stored earlier is encrypted at start), without a key a
/// warning says so once, and an encrypted store without its key stops with exit 2 naming the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_store_at_trace_prints_no_secret_and_encrypts_with_a_key() {
    let sim = company()
        .access_token_ttl(Duration::from_secs(2))
        .rotation(Rotation::EveryRefresh)
        .old_refresh_token_grace(Some(Duration::from_secs(3600)))
        .latency(Duration::from_millis(5), Duration::ZERO)
        .spawn()
        .await
        .unwrap();
    let initial_refresh = sim.refresh_token();
    let (_db, url, sink) = fresh_db().await;

    // Without a key: the token is stored as it is, and the run says so once.
    let mut c = pipeline(&sim, &url, ARGS);
    c.env("RUST_LOG", "trace");
    let plain = spawn(c).wait().await;
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    assert_eq!(
        plain.stderr.matches("token_store_unencrypted").count(),
        1,
        "one warning at start"
    );
    let after_plain = sim.refresh_token();
    assert_eq!(stored_tokens(&sink).await, vec![after_plain.clone()]);

    // With a key: the plain token is encrypted at start and every save after it.
    let mut c = pipeline(&sim, &url, &[ARGS, &["--force"]].concat());
    c.env("RUST_LOG", "trace").env("QBO_TOKEN_KEY", TOKEN_KEY);
    let keyed = spawn(c).wait().await;
    assert_eq!(keyed.code, Some(0), "{}", keyed.stderr);
    assert!(!keyed.stderr.contains("token_store_unencrypted"));
    let stored = stored_tokens(&sink).await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].starts_with("enc:v1:"), "encrypted at rest");
    for t in [&initial_refresh, &after_plain, &sim.refresh_token()] {
        assert!(
            !stored[0].contains(t.as_str()),
            "a token in plain text in the table"
        );
    }

    // The key is needed to read it back: without it, exit 2 and one line naming the fix.
    let mut c = pipeline(&sim, &url, &[ARGS, &["--force"]].concat());
    c.env("RUST_LOG", "trace");
    let requests_before = sim.stats().endpoint_total("token");
    let no_key = spawn(c).wait().await;
    assert_eq!(no_key.code, Some(2), "{}", no_key.stderr);
    // (Trace lines of closing connections may follow the error line.)
    let errors: Vec<&str> = no_key
        .stderr
        .lines()
        .filter(|l| l.contains(": error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{}", no_key.stderr);
    assert!(
        errors[0].contains("QBO_TOKEN_KEY") && errors[0].contains("encrypted"),
        "{}",
        errors[0]
    );
    assert_eq!(sim.stats().endpoint_total("token"), requests_before);

    let mut secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    secrets.push(after_plain);
    secrets.push(TOKEN_KEY.to_owned());
    assert_no_secrets(&[plain.text(), keyed.text(), no_key.text()], &secrets);
    sim.shutdown().await.unwrap();
}
