//! The token store and QBO's refusals at the process level (issue 12): a store that cannot
//! work is found at start (exit 2, before any refresh), and a refusal that a new refresh token
//! does not fix exits 6 with its own fix instead of exit 3 and the rotation runbook.

use raw_sink::testing::TestDb;

use crate::common::*;

const RANGE: [&str; 4] = ["--start", "2023-01-01", "--end", "2023-01-03"];

/// Item 14: a token-store path that is a directory (or in a directory that does not exist)
/// exits 2 with one line saying so, and no refresh is made (Intuit would rotate the token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_token_file_exits_2_before_any_refresh() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/tokens.json");
    for (path, words) in [
        (dir.path().to_owned(), "is a directory"),
        (missing, "does not exist"),
    ] {
        let mut c = command(&sim, &db_url(&db));
        c.args(RANGE)
            .arg(format!("--token-store=file:{}", path.display()));
        let o = output(c).await;
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let lines: Vec<_> = err.lines().filter(|l| l.contains(": error: ")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains(words), "{err}");
        assert_eq!(sim.stats().endpoint_total("token"), 0, "no refresh");
        assert_eq!(sim.stats().endpoint_total("query"), 0);
    }
    sim.shutdown().await.unwrap();
}

/// The app's credentials refused (`invalid_client`): exit 6, the message names the app keys,
/// and no rotation runbook (the refresh token is fine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_app_credentials_exit_6_naming_the_keys_not_the_runbook() {
    let sim = small_sim().await;
    let db = TestDb::new().await;
    let mut c = command(&sim, &db_url(&db));
    c.args(RANGE)
        .env("QBO_CLIENT_SECRET", "wrong-client-secret-value");
    let o = output(c).await;
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(6), "{err}");
    let last = err.lines().rfind(|l| l.contains(": error: ")).unwrap();
    assert!(last.contains("QBO_CLIENT_SECRET"), "{last}");
    assert!(last.contains("refused access"), "{last}");
    assert!(!last.contains("runbook"), "{last}");
    assert!(!err.contains("wrong-client-secret-value"));
    sim.shutdown().await.unwrap();
}
