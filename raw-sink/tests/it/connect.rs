//! Reaching (or not reaching) the server.

use std::time::{Duration, Instant};

use raw_sink::testing::TestDb;
use raw_sink::{PgConfig, Sink, SinkError, SslMode};

const PASSWORD: &str = "s3cr3t-do-not-print";

/// A loopback port with nothing listening.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn assert_no_secret(e: &SinkError) {
    let mut shown = format!("{e} {e:?}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        shown.push_str(&c.to_string());
        cause = c.source();
    }
    assert!(!shown.contains(PASSWORD), "secret printed: {shown}");
}

#[tokio::test]
async fn refused_connection_is_a_quick_retryable_connect_error() {
    let port = closed_port();
    let cfg =
        PgConfig::from_url(&format!("postgres://loader:{PASSWORD}@127.0.0.1:{port}/qb")).unwrap();
    let started = Instant::now();
    let e = Sink::connect(&cfg).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(e.is_connect() && e.is_retryable(), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("cannot connect to PostgreSQL at 127.0.0.1:{port} (database qb, user loader)")
    );
    assert_no_secret(&e);
}

#[tokio::test]
async fn silent_server_times_out_within_the_connect_timeout() {
    // Accepts TCP connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let cfg = PgConfig::from_url(&format!("postgres://u:{PASSWORD}@127.0.0.1:{port}/d"))
        .unwrap()
        .with_ssl_mode(SslMode::Disable)
        .with_connect_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let e = Sink::connect(&cfg).await.unwrap_err();
    let elapsed = started.elapsed();
    holder.abort();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(e.is_connect() && e.is_retryable(), "{e:?}");
    assert_no_secret(&e);
}

#[tokio::test]
async fn unknown_database_is_a_connect_error_that_is_not_retryable() {
    let db = TestDb::new().await;
    let cfg = db.config().clone().with_database("no_such_database_here");
    let e = Sink::connect(&cfg).await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    assert!(!e.is_retryable(), "{e:?}");
    assert_eq!(e.sqlstate(), Some("3D000"));
}

#[tokio::test]
async fn tls_modes_against_a_server_without_tls() {
    let db = TestDb::new().await;
    // prefer: falls back to plain TCP.
    let sink = Sink::connect(&db.config().clone().with_ssl_mode(SslMode::Prefer))
        .await
        .unwrap();
    let client = sink.pool().get().await.unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);
    // require: refused, and retrying will not help.
    let e = Sink::connect(&db.config().clone().with_ssl_mode(SslMode::Require))
        .await
        .unwrap_err();
    assert!(e.is_connect() && !e.is_retryable(), "{e:?}");
}

#[tokio::test]
async fn pool_errors_after_close_are_typed() {
    let db = TestDb::new().await;
    let sink = db.migrated_sink().await;
    sink.close();
    let e = sink
        .ledger()
        .get_run(raw_sink::RunId::new(1))
        .await
        .unwrap_err();
    assert!(matches!(e, SinkError::Pool(_)), "{e:?}");
    assert!(!e.is_retryable());
}
