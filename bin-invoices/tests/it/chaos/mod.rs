//! Chaos tests of the pipeline processes (group `chaos`: `cargo nextest run -E 'test(/chaos::/)'`).
//! Every scenario ends by comparing the raw table, as an ordered hash of realm, id, window and
//! payload, with a clean run's, and by checking that the ledger is settled (every window done,
//! none running or leased, no run left running, the trigger completed).

mod kill;
mod postgres;
mod secrets;
mod signals;
mod token;
mod workers;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qbo_sim::SimHandle;
use raw_sink::Sink;
use raw_sink::testing::TestDb;

use crate::common::*;

/// A pipeline process whose output goes to files (readable after a kill).
pub struct Spawned {
    child: Child,
    out: PathBuf,
    err: PathBuf,
    _dir: tempfile::TempDir,
    started: Instant,
}

/// How a process ended and what it printed.
#[derive(Debug)]
pub struct Ended {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Ended {
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub fn spawn(mut c: Command) -> Spawned {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdout");
    let err = dir.path().join("stderr");
    c.stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()));
    let child = c.spawn().unwrap();
    Spawned {
        child,
        out,
        err,
        _dir: dir,
        started: Instant::now(),
    }
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL (no cleanup at all).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Sends `TERM` or `INT`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    pub async fn wait(mut self) -> Ended {
        let status = tokio::task::spawn_blocking(move || {
            let s = self.child.wait().unwrap();
            (s, self)
        })
        .await
        .unwrap();
        let (status, this) = status;
        Ended {
            code: status.code(),
            stdout: std::fs::read_to_string(&this.out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&this.err).unwrap_or_default(),
            elapsed: this.started.elapsed(),
        }
    }
}

/// The pipeline command with `args` and fast limits (the tests are not about QBO's budget
/// unless they say so).
pub fn pipeline(sim: &SimHandle, url: &str, args: &[&str]) -> Command {
    let mut c = command(sim, url);
    c.args(["--log-format", "json", "--requests-per-min", "60000"])
        .args(args);
    c
}

/// `(rows, md5)` over realm, id, window start and payload of `raw.qb_invoices`, ordered by key.
pub async fn table_hash(sink: &Sink) -> (i64, String) {
    let c = sink.pool().get().await.unwrap();
    let row = c
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg(realm_id || '|' || id || '|' || \
             extract_window_start_utc::text || '|' || payload::text, E'\\n' ORDER BY realm_id, id)), '') \
             FROM raw.qb_invoices",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// `(rows, md5)` of realm, id and payload: of the table, and of the simulator's truth passed
/// through jsonb the same way.
pub async fn payload_hashes(sink: &Sink, sim: &SimHandle) -> ((i64, String), (i64, String)) {
    let truth = sim.truth("Invoice");
    let ids: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
    let jsons: Vec<String> = truth.iter().map(|t| t.json.clone()).collect();
    let realm = sim.realm_id();
    let c = sink.pool().get().await.unwrap();
    let table = c
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg(realm_id || '|' || id || '|' || payload::text, \
             E'\\n' ORDER BY realm_id, id)), '') FROM raw.qb_invoices",
            &[],
        )
        .await
        .unwrap();
    let expected = c
        .query_one(
            "SELECT count(*), coalesce(md5(string_agg($1 || '|' || id || '|' || j::jsonb::text, \
             E'\\n' ORDER BY $1, id)), '') FROM unnest($2::text[], $3::text[]) AS t(id, j)",
            &[&realm, &ids, &jsons],
        )
        .await
        .unwrap();
    (
        (table.get(0), table.get(1)),
        (expected.get(0), expected.get(1)),
    )
}

/// Every window done, none running or leased; no run running; every trigger completed; no
/// worker left holding a lease.
pub async fn assert_ledger_settled(sink: &Sink) {
    for (sql, what) in [
        (
            "SELECT count(*) FROM backfill.windows WHERE status <> 'done' OR lease_owner IS NOT NULL",
            "windows not done or still leased",
        ),
        (
            "SELECT count(*) FROM backfill.runs WHERE status = 'running'",
            "runs left running",
        ),
        (
            "SELECT count(*) FROM backfill.triggers WHERE status <> 'completed'",
            "triggers not completed",
        ),
        (
            "SELECT count(*) FROM backfill.workers WHERE stopped_at IS NULL AND lease_expires_at > now()",
            "live workers",
        ),
    ] {
        assert_eq!(count(sink, sql).await, 0, "{what}");
    }
}

/// Waits until `sql` (a count) reaches `n`, failing if `child` ends first or after `limit`.
pub async fn wait_for(sink: &Sink, sql: &str, n: i64, child: &mut Spawned, limit: Duration) {
    let started = Instant::now();
    loop {
        if has_table(sink, "backfill.workers").await && count(sink, sql).await >= n {
            return;
        }
        assert!(child.is_running(), "the process ended before: {sql} >= {n}");
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {sql} >= {n}"
        );
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

/// A fresh database and a connected sink on it.
pub async fn fresh_db() -> (TestDb, String, Sink) {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let sink = db.sink().await;
    (db, url, sink)
}

/// Runs the pipeline to completion on a fresh database; returns its table hash.
pub async fn clean_run(sim: &SimHandle, args: &[&str]) -> ((i64, String), Duration) {
    let (_db, url, sink) = fresh_db().await;
    let ended = spawn(pipeline(sim, &url, args)).wait().await;
    assert_eq!(ended.code, Some(0), "clean run: {}", ended.stderr);
    let (table, truth) = payload_hashes(&sink, sim).await;
    assert_eq!(
        table, truth,
        "the clean run differs from the simulator's truth"
    );
    assert_ledger_settled(&sink).await;
    (table_hash(&sink).await, ended.elapsed)
}

/// Fails if any secret appears in any of the texts.
pub fn assert_no_secrets(texts: &[String], secrets: &[String]) {
    for s in secrets.iter().filter(|s| s.len() >= 8) {
        for t in texts {
            assert!(
                !t.contains(s.as_str()),
                "a secret value appears in the output"
            );
        }
    }
}

/// The secrets a run against `sim` may know: the client secret, the initial refresh token, and
/// every refresh token stored in the database.
pub async fn secrets_of(sim: &SimHandle, sink: &Sink, initial_refresh: &str) -> Vec<String> {
    let mut s = vec![
        sim.client_secret(),
        initial_refresh.to_owned(),
        sim.refresh_token(),
    ];
    let c = sink.pool().get().await.unwrap();
    if let Ok(rows) = c
        .query(
            "SELECT refresh_token FROM backfill.oauth_tokens WHERE refresh_token IS NOT NULL",
            &[],
        )
        .await
    {
        s.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    s
}

/// A small deterministic generator (splitmix64) for kill moments.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The `[from, to)` of a query's `MetaData.CreateTime` filter.
pub fn query_range(q: &str) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let lit = |marker: &str| {
        let rest = q
            .split(marker)
            .nth(1)
            .unwrap_or_else(|| panic!("no {marker} in {q}"));
        let s = rest.trim_start().trim_start_matches('\'');
        time::OffsetDateTime::parse(
            s.split('\'').next().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    (lit("MetaData.CreateTime >="), lit("MetaData.CreateTime <"))
}

/// Fails if the simulator received a query overlapping one of `done`.
pub fn assert_not_requested(
    sim: &SimHandle,
    done: &[(time::OffsetDateTime, time::OffsetDateTime)],
) {
    let queries: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "query")
        .filter_map(|r| r.query)
        .collect();
    assert!(!queries.is_empty());
    for q in &queries {
        let (from, to) = query_range(q);
        for (s, e) in done {
            assert!(
                to <= *s || from >= *e,
                "{q} re-requested the done window [{s}, {e})"
            );
        }
    }
}
