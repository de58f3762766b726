//! The status page's connections (token facts, never a token) and their expiry metrics, against
//! a ledger made by real backfills and a company whose token facts say it expires soon.
use raw_sink::TokenGrantNote;
use secrecy::SecretString;

use crate::status::{get, ledger, parse_openmetrics, sample, serve_loopback};

const STORED_TOKEN: &str = "rt-stored-never-shown-3f9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_show_token_expiry_and_metrics_equal_the_ledger() {
    let (sim, _db, sink) = ledger().await;
    let realm = sim.realm_id();
    let ledger_api = sink.ledger();
    ledger_api
        .token_put(&realm, &SecretString::from(STORED_TOKEN.to_owned()))
        .await
        .unwrap();
    ledger_api
        .token_note_grant(
            &realm,
            &TokenGrantNote {
                refresh_expires_in: Some(20 * 86_400),
                hard_expires_in: Some(1_800 * 86_400),
                client_id: Some("app-<1>".into()),
                company_name: Some("Acme & Sons".into()),
                connected: true,
            },
        )
        .await
        .unwrap();
    let addr = serve_loopback(&sink).await;

    let (status, _, page) = get(&format!("http://{addr}/"), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"connections\""), "{page}");
    assert!(
        page.contains(&format!(
            "data-realm=\"{realm}\" data-connection=\"expiring\""
        )),
        "a refresh token 20 days from expiry is flagged"
    );
    assert!(page.contains("Acme &amp; Sons") && page.contains("app-&lt;1&gt;"));
    assert!(page.contains("id=\"syncs\""));
    assert!(!page.contains(STORED_TOKEN), "a token on the page");

    let (_, _, text) = get(&format!("http://{addr}/metrics"), None).await;
    assert!(!text.contains(STORED_TOKEN), "a token in /metrics");
    let samples = parse_openmetrics(&text);
    let row = sink
        .pool()
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT extract(epoch FROM refresh_expires_at)::float8, \
                    extract(epoch FROM hard_expires_at)::float8 \
             FROM backfill.oauth_tokens WHERE realm_id = $1",
            &[&realm],
        )
        .await
        .unwrap();
    let (refresh, hard): (f64, f64) = (row.get(0), row.get(1));
    let labels = [("realm", realm.as_str())];
    let shown = sample(
        &samples,
        "qb_backfill_token_refresh_expiry_timestamp_seconds",
        &labels,
    )
    .expect("refresh expiry metric");
    assert!((shown - refresh).abs() < 1e-3, "{shown} vs {refresh}");
    let shown = sample(
        &samples,
        "qb_backfill_token_hard_expiry_timestamp_seconds",
        &labels,
    )
    .expect("hard expiry metric");
    assert!((shown - hard).abs() < 1e-3, "{shown} vs {hard}");
    sim.shutdown().await.unwrap();
}
