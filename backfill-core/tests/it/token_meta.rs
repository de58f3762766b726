//! The facts kept beside a token in `backfill.oauth_tokens` (V8): recorded by refreshes and
//! connections, read without the token, removed with it.

use std::sync::Arc;

use backfill_core::PgTokenStore;
use qbo_client::{
    Credentials, Environment, QboClient, QboConfig, Query, RateLimit, SecretString, TokenNote,
    TokenStore,
};
use qbo_sim::Sim;
use time::OffsetDateTime;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_and_connections_are_recorded_and_read_without_the_token() {
    let sim = Sim::builder().customers(20).spawn().await.unwrap();
    let (_db, sink) = db().await;
    let store = Arc::new(PgTokenStore::new(&sink));
    let realm = sim.realm_id();
    store
        .save(&realm, &SecretString::from(sim.refresh_token()))
        .await
        .unwrap();
    store
        .note(
            &realm,
            &TokenNote::Connected {
                company_name: Some("Sim Company".into()),
                client_id: sim.client_id(),
                refresh_expires_in: Some(86_400),
                hard_expires_in: Some(10 * 86_400),
            },
        )
        .await
        .unwrap();
    let m = store.metadata(Some(&realm)).await.unwrap();
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert!(m.has_token);
    assert_eq!(m.company_name.as_deref(), Some("Sim Company"));
    assert_eq!(m.client_id.as_deref(), Some(sim.client_id().as_str()));
    let now = OffsetDateTime::now_utc();
    let day = m.refresh_expires_at.unwrap() - now;
    assert!(
        day > time::Duration::hours(23) && day <= time::Duration::hours(24),
        "{day}"
    );
    let connected = m.connected_at.unwrap();

    // A refresh (which rotates in the simulator) moves the expiries and the rotation time.
    let cfg = QboConfig::new(
        Environment::Sandbox,
        &realm,
        Credentials::new(sim.client_id(), sim.client_secret(), "AB11unused"),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap();
    let client = QboClient::builder(cfg)
        .token_store(store.clone())
        .rate_limit(RateLimit::unlimited())
        .build()
        .unwrap();
    client
        .count(&Query::select("Customer").build().unwrap())
        .await
        .unwrap();
    let after = store.metadata(None).await.unwrap();
    assert_eq!(after.len(), 1);
    let a = &after[0];
    assert!(a.refresh_expires_at.unwrap() - now > time::Duration::days(90));
    assert!(a.hard_expires_at.unwrap() - now > time::Duration::days(4 * 365));
    assert!(a.rotated_at.unwrap() >= connected);
    assert_eq!(a.company_name.as_deref(), Some("Sim Company"));
    assert_eq!(a.connected_at, Some(connected));
    // The COUNT's answer is the last success (recorded by the client's first answer).
    assert!(a.last_success_at.unwrap() > connected);

    assert!(store.remove(&realm).await.unwrap());
    assert!(store.load(&realm).await.unwrap().is_none());
    assert!(store.metadata(None).await.unwrap().is_empty());
    assert!(!store.remove(&realm).await.unwrap());
    sim.shutdown().await.unwrap();
}
