//! Token store and its refresh lock.

use std::sync::Arc;
use std::time::Duration;

use raw_sink::testing::TestDb;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Barrier;

use crate::REALM;

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::test]
async fn get_and_put() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let ledger = sink.ledger();
    assert!(ledger.token_get(REALM).await.unwrap().is_none());
    ledger.token_put(REALM, &secret("RT-1")).await.unwrap();
    ledger.token_put(REALM, &secret("RT-1")).await.unwrap();
    ledger.token_put(REALM, &secret("RT-2")).await.unwrap();
    assert_eq!(
        ledger
            .token_get(REALM)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "RT-2"
    );
    assert!(ledger.token_get("other-realm").await.unwrap().is_none());
    let client = sink.pool().get().await.unwrap();
    let rotated: i64 = client
        .query_one(
            "SELECT rotated_count FROM backfill.oauth_tokens WHERE realm_id = $1",
            &[&REALM],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(rotated, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_refreshers_one_wins_the_other_sees_its_token() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    sink.ledger()
        .token_put(REALM, &secret("RT-old"))
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));

    let refresher = |name: &'static str| {
        let ledger = sink.ledger();
        let barrier = Arc::clone(&barrier);
        tokio::spawn(async move {
            barrier.wait().await;
            let lock = ledger.token_lock(REALM).await.unwrap();
            let seen = lock.current().unwrap().expose_secret().to_owned();
            if seen == "RT-old" {
                // "Refresh" at QBO while holding the lock, then persist the rotated token.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let new = format!("RT-new-by-{name}");
                lock.replace(&secret(&new)).await.unwrap();
                (true, new)
            } else {
                lock.release().await.unwrap();
                (false, seen)
            }
        })
    };
    let (a, b) = tokio::join!(refresher("a"), refresher("b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.0 ^ b.0, "exactly one refreshes: {a:?} {b:?}");
    // The loser saw the winner's token, never the old one.
    assert_eq!(a.1, b.1);
    assert_eq!(
        sink.ledger()
            .token_get(REALM)
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        a.1
    );
}

#[tokio::test]
async fn dropped_lock_rolls_back_and_frees_the_row() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    let ledger = sink.ledger();

    // No row yet: the lock creates an empty one.
    let lock = ledger.token_lock(REALM).await.unwrap();
    assert!(lock.current().is_none());
    lock.replace(&secret("RT-first")).await.unwrap();

    let lock = ledger.token_lock(REALM).await.unwrap();
    let debug = format!("{lock:?}");
    assert!(
        !debug.contains("RT-first") && debug.contains("REDACTED"),
        "{debug}"
    );
    drop(lock); // e.g. the refresh failed and the caller bailed out

    let lock = tokio::time::timeout(Duration::from_secs(5), ledger.token_lock(REALM))
        .await
        .expect("the dropped lock must not block others")
        .unwrap();
    assert_eq!(lock.current().unwrap().expose_secret(), "RT-first");
    lock.release().await.unwrap();

    // Plain reads are not blocked by a held lock.
    let held = ledger.token_lock(REALM).await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), ledger.token_get(REALM))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.unwrap().expose_secret(), "RT-first");
    held.release().await.unwrap();
}
