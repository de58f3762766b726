//! Secrets never appear in Debug, error messages or logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qbo_client::{QboClient, QboConfig, QboError, Query, RateLimit, SecretString};
use qbo_sim::{Rotation, ScriptedFault};
use tracing_subscriber::fmt::MakeWriter;

use crate::common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = format!("{e} | {e:?}");
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(&format!(" <- {s} | {s:?}"));
        cur = s.source();
    }
    out
}

#[tokio::test]
async fn secrets_never_reach_debug_errors_or_logs() {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("qbo_client=trace,reqwest=trace,hyper=trace")
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let client_secret = "sUp3r-s3cret-client-value-0000000000000";
    let sim = sim_builder()
        .seed(60)
        .client_secret(client_secret)
        .rotation(Rotation::EveryRefresh)
        .invoices(30)
        .spawn()
        .await
        .unwrap();
    let initial_refresh = sim.refresh_token();
    let store = Arc::new(ProbeStore::default());
    let cfg = config(&sim);
    let b = builder(&sim, store.clone());
    let mut text = format!("{cfg:?} {:?} {b:?}", cfg.credentials);
    let client = b.build().unwrap();
    text.push_str(&format!("{client:?}"));

    // Refresh, rotation, a 401 refresh, retries, a fault.
    let q = Query::select("Invoice").max_results(10).build().unwrap();
    client.query_page(&q).await.unwrap();
    sim.script(vec![
        ScriptedFault::ExpiredToken,
        ScriptedFault::Throttle,
        ScriptedFault::Status(503),
    ]);
    client.query_page(&q).await.unwrap();
    sim.script(vec![
        ScriptedFault::ExpiredToken,
        ScriptedFault::ExpiredToken,
    ]);
    let e401 = client.query_page(&q).await.unwrap_err();
    text.push_str(&chain(&e401));
    let bad = Query::select("Invoice")
        .filter("Nope", qbo_client::Op::Eq, "x")
        .build()
        .unwrap();
    text.push_str(&chain(&client.query_page(&bad).await.unwrap_err()));

    // invalid_client with the real secret of another app, and invalid_grant.
    let mut wrong = config(&sim);
    wrong.credentials.client_secret = SecretString::from("an0ther-wr0ng-secret-value");
    let other = QboClient::builder(wrong)
        .rate_limit(RateLimit::unlimited())
        .build()
        .unwrap();
    let e = other.query_page(&q).await.unwrap_err();
    assert!(e.is_auth());
    text.push_str(&chain(&e));
    sim.revoke_refresh_tokens();
    sim.expire_access_tokens();
    let e = client.query_page(&q).await.unwrap_err();
    assert!(matches!(e, QboError::Auth(_)), "{e:?}");
    text.push_str(&chain(&e));
    let e = client
        .ensure_token_valid_for(Duration::from_secs(1))
        .await
        .unwrap_err();
    text.push_str(&chain(&e));

    // Config errors built from secret-bearing variables.
    let secret_file = "/nonexistent/qbo-secret";
    let e = QboConfig::from_lookup(|k| match k {
        "QBO_CLIENT_ID" => Some("id".into()),
        "QBO_CLIENT_SECRET" => Some(client_secret.into()),
        "QBO_REFRESH_TOKEN" => Some(initial_refresh.clone()),
        "QBO_REFRESH_TOKEN_FILE" => Some(secret_file.into()),
        _ => None,
    })
    .unwrap_err();
    text.push_str(&chain(&e));

    drop(_guard);
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logged.contains("token_refreshed"), "events were captured");
    assert!(logged.contains("\"retry\""), "retry events were captured");
    assert!(logged.contains("expires_in"));
    text.push_str(&logged);

    let mut secrets = vec![
        client_secret.to_owned(),
        "an0ther-wr0ng-secret-value".to_owned(),
        initial_refresh,
    ];
    secrets.extend(store.saved());
    assert!(
        secrets.len() >= 5,
        "rotated tokens were seen: {}",
        secrets.len()
    );
    for s in &secrets {
        assert!(!text.contains(s.as_str()), "secret leaked: {s}");
    }
    // Access tokens (the sim's JWE-like strings) never appear either.
    assert!(!text.contains("eyJlbmMi"), "an access token leaked");
    assert!(text.contains("[REDACTED]"));
}
