//! PostgreSQL going away mid-run, on a private throwaway cluster of this test (never the shared
//! one): a restart is ridden out by retries; an outage longer than `--db-retry-for` stops the
//! run with exit 5 and the next run, once the database is back, finishes with nothing lost; a
//! second SIGTERM exits at once while the first is still waiting for the database.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use qbo_sim::{Sim, SimHandle};
use raw_sink::{PgConfig, Sink};
use time::macros::datetime;

use super::*;

/// A PostgreSQL cluster in a temporary directory, run as `postgres` when the tests run as root.
struct PrivateCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_root: bool,
    port: u16,
}

fn pg_bin() -> PathBuf {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return dir;
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .expect("initdb and pg_ctl not found: install the PostgreSQL server binaries")
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        let as_root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::Builder::new()
            .prefix("qb-chaos-pg-")
            .tempdir()
            .unwrap();
        if as_root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the cluster directory failed");
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = PrivateCluster {
            dir,
            bin: pg_bin(),
            as_root,
            port,
        };
        c.run(c.pg("initdb").arg("-D").arg(c.data()).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        c.ctl_start();
        c
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        let mut c = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }

    fn run(&self, c: &mut Command) {
        let status = c.status().unwrap();
        assert!(status.success(), "{c:?} failed: {status}");
    }

    fn options(&self) -> String {
        format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=100",
            self.port,
            self.dir.path().display()
        )
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn ctl_start(&self) {
        let opts = self.options();
        self.run(
            self.pg("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log())
                .args(["-w", "-t", "60", "-o", &opts, "start"]),
        );
    }

    /// `pg_ctl restart -m fast`: every connection is closed, the server comes back.
    fn restart(&self) {
        let opts = self.options();
        self.run(
            self.pg("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.log())
                .args(["-w", "-t", "60", "-m", "fast", "-o", &opts, "restart"]),
        );
    }

    /// `pg_ctl stop -m immediate`: the server dies at once (like a crash).
    fn stop(&self) {
        self.run(self.pg("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    async fn create_database(&self, name: &str) -> Sink {
        let admin = Sink::connect(&PgConfig::from_url(&self.url("postgres")).unwrap())
            .await
            .unwrap();
        admin
            .pool()
            .get()
            .await
            .unwrap()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close();
        Sink::connect(
            &PgConfig::from_url(&self.url(name))
                .unwrap()
                .with_pool_size(2),
        )
        .await
        .unwrap()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .pg("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .status();
    }
}

const ARGS: &[&str] = &[
    "--start",
    "2023-11-01",
    "--end",
    "2023-11-11",
    "--page-size",
    "10",
    "--concurrency",
    "2",
];

async fn company() -> SimHandle {
    Sim::builder()
        .seed(121)
        .invoices(500)
        .span(
            datetime!(2023-11-01 00:00 UTC),
            datetime!(2023-11-11 00:00 UTC),
        )
        .latency(Duration::from_millis(20), Duration::ZERO)
        .old_refresh_token_grace(Some(Duration::from_secs(3600)))
        .requests_per_min(0)
        .max_concurrency(0)
        .spawn()
        .await
        .unwrap()
}

/// Polls the private database (which may be down) until `n` windows are done.
async fn wait_done(url: &str, n: i64, child: &mut Spawned) {
    let cfg = PgConfig::from_url(url).unwrap().with_pool_size(1);
    let started = std::time::Instant::now();
    loop {
        assert!(child.is_running(), "the run ended too early");
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(sink) = Sink::connect(&cfg).await else {
            continue;
        };
        let done = if has_table(&sink, "backfill.workers").await {
            count(
                &sink,
                "SELECT count(*) FROM backfill.windows WHERE status = 'done'",
            )
            .await
        } else {
            0
        };
        sink.close();
        if done >= n {
            return;
        }
    }
}

fn reference_args<'a>(extra: &'a [&'a str]) -> Vec<&'a str> {
    ARGS.iter().chain(extra.iter()).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_outage_and_double_signal_on_a_private_cluster() {
    let sim = company().await;
    let initial_refresh = sim.refresh_token();
    let (clean, _) = clean_run(&sim, ARGS).await;
    let cluster = PrivateCluster::start();
    let mut outputs = Vec::new();

    // 1. A restart mid-run: ridden out, the run completes.
    let sink = cluster.create_database("restart").await;
    let url = cluster.url("restart");
    let mut child = spawn(pipeline(
        &sim,
        &url,
        &reference_args(&["--db-retry-for", "60s"]),
    ));
    wait_done(&url, 2, &mut child).await;
    cluster.restart();
    let ended = child.wait().await;
    outputs.push(ended.text());
    assert_eq!(ended.code, Some(0), "{}", ended.stderr);
    assert!(
        ended.stderr.contains("db_retry"),
        "no database retry was needed?"
    );
    let sink = reconnect(sink, &url).await;
    assert_eq!(table_hash(&sink).await, clean);
    assert_ledger_settled(&sink).await;
    let secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    assert_no_secrets(&outputs, &secrets);
    sink.close();

    // 2. An outage longer than the bound: exit 5; once the database is back, the next run
    //    finishes with nothing lost.
    let sink = cluster.create_database("outage").await;
    let url = cluster.url("outage");
    let mut child = spawn(pipeline(
        &sim,
        &url,
        &reference_args(&["--db-retry-for", "2s"]),
    ));
    wait_done(&url, 2, &mut child).await;
    sink.close();
    cluster.stop();
    let ended = child.wait().await;
    outputs.push(ended.text());
    assert_eq!(ended.code, Some(5), "{}", ended.stderr);
    assert!(ended.elapsed < Duration::from_secs(30));
    cluster.ctl_start();
    let resumed = spawn(pipeline(&sim, &url, ARGS)).wait().await;
    outputs.push(resumed.text());
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    let sink = Sink::connect(&PgConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(table_hash(&sink).await, clean);
    assert_ledger_settled(&sink).await;
    sink.close();

    // 3. SIGTERM while the database is down: the clean stop waits for it (bounded); a second
    //    SIGTERM exits at once with 143. The next run finishes the rest.
    let sink = cluster.create_database("signals").await;
    let url = cluster.url("signals");
    let mut child = spawn(pipeline(
        &sim,
        &url,
        &reference_args(&["--db-retry-for", "60s"]),
    ));
    wait_done(&url, 1, &mut child).await;
    sink.close();
    cluster.stop();
    child.signal("TERM");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        child.is_running(),
        "the first SIGTERM should wait for the database"
    );
    let second = std::time::Instant::now();
    child.signal("TERM");
    let ended = child.wait().await;
    outputs.push(ended.text());
    assert_eq!(ended.code, Some(143), "{}", ended.stderr);
    assert!(
        second.elapsed() < Duration::from_secs(2),
        "{:?}",
        second.elapsed()
    );
    cluster.ctl_start();
    let resumed = spawn(pipeline(&sim, &url, ARGS)).wait().await;
    outputs.push(resumed.text());
    assert_eq!(resumed.code, Some(0), "{}", resumed.stderr);
    let sink = Sink::connect(&PgConfig::from_url(&url).unwrap())
        .await
        .unwrap();
    assert_eq!(table_hash(&sink).await, clean);
    assert_ledger_settled(&sink).await;
    let secrets = secrets_of(&sim, &sink, &initial_refresh).await;
    assert_no_secrets(&outputs, &secrets);
    sink.close();
    sim.shutdown().await.unwrap();
}

async fn reconnect(old: Sink, url: &str) -> Sink {
    old.close();
    Sink::connect(&PgConfig::from_url(url).unwrap())
        .await
        .unwrap()
}
