//! Soak benchmark (not a test): 2,000,000 invoices through `qb-invoices-backfill` while the
//! simulator injects faults, with the pipeline's memory sampled all along. Prints the figures of
//! docs/RELIABILITY.md: records, time, requests, faults injected, retries, records lost,
//! duplicates, and resident memory (peak and per tenth of the load, to show it stays flat).
//!
//! ```text
//! cargo xtask pg start
//! cargo build --release -p bin-invoices --bin qb-invoices-backfill -p examples --example soak
//! DATABASE_URL=$(cargo xtask pg url) target/release/examples/soak [RECORDS] [FAULT_RATE]
//! ```
//!
//! RECORDS defaults to 2000000 and FAULT_RATE (the share of API requests that fail, split over
//! 429, 500, 502, 503, 504, dropped connections, malformed JSON and faults inside HTTP 200)
//! to 0.05. The pipeline binary is taken from beside this example (`target/release/`) or from
//! `QB_INVOICES_BIN`.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qbo_sim::{FaultPlan, Sim};
use raw_sink::testing::TestDb;
use time::macros::datetime;

type Res<T> = Result<T, Box<dyn Error>>;

fn pipeline_binary() -> Res<PathBuf> {
    if let Ok(p) = std::env::var("QB_INVOICES_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe()?;
    let dir = me
        .parent()
        .and_then(|examples| examples.parent())
        .ok_or("cannot locate the target directory")?;
    let bin = dir.join("qb-invoices-backfill");
    if !bin.is_file() {
        return Err(format!(
            "{} not found: build it first (cargo build --release -p bin-invoices --bin qb-invoices-backfill -p examples --example soak)",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// Resident set size of a live process, in KiB (`VmRSS`, `VmHWM`).
fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let records: usize = args.next().map_or(Ok(2_000_000), |a| a.parse())?;
    let rate: f64 = args.next().map_or(Ok(0.05), |a| a.parse())?;
    let bin = pipeline_binary()?;

    let share = rate / 8.0;
    let faults = FaultPlan {
        throttle: share,
        server_error: share,
        bad_gateway: share,
        service_unavailable: share,
        gateway_timeout: share,
        drop_connection: share,
        malformed_json: share,
        fault_with_200: share,
        seed: 2024,
        ..FaultPlan::none()
    };
    let started_gen = Instant::now();
    let sim = Sim::builder()
        .seed(2024)
        .invoices(records)
        .customers(0)
        .items(0)
        .vendors(0)
        .span(
            datetime!(2022-01-01 00:00 UTC),
            datetime!(2023-01-01 00:00 UTC),
        )
        .requests_per_min(0)
        .max_concurrency(0)
        .faults(faults)
        .spawn()
        .await?;
    eprintln!(
        "soak: simulator ready with {records} invoices in {:.1}s; fault rate {rate}",
        started_gen.elapsed().as_secs_f64()
    );
    let db = TestDb::new().await;
    let sink = db.sink().await;
    let base = std::env::var("DATABASE_URL")?;
    let (head, tail) = base
        .split_once('?')
        .map_or((base.as_str(), ""), |(h, t)| (h, t));
    let cut = head.rfind('/').ok_or("DATABASE_URL has no database part")?;
    let url = format!(
        "{}/{}{}",
        &head[..cut],
        db.name(),
        if tail.is_empty() {
            String::new()
        } else {
            format!("?{tail}")
        }
    );

    let log = tempfile::NamedTempFile::new()?;
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .env_clear()
        .env("QBO_CLIENT_ID", sim.client_id())
        .env("QBO_CLIENT_SECRET", sim.client_secret())
        .env("QBO_REFRESH_TOKEN", sim.refresh_token())
        .env("QBO_REALM_ID", sim.realm_id())
        .env("QBO_ENV", "sandbox")
        .env("QBO_BASE_URL", sim.base_url())
        .env("QBO_TOKEN_URL", sim.token_url())
        .env("DATABASE_URL", &url)
        .args([
            "--start",
            "2022-01-01",
            "--end",
            "2023-01-01",
            "--log-format",
            "json",
            "--requests-per-min",
            "60000",
            "--max-in-flight",
            "10",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log.reopen()?))
        .spawn()?;
    let pid = child.id();

    // Sample memory and progress until the pipeline exits.
    let mut peak = 0u64;
    let mut by_tenth: BTreeMap<u64, u64> = BTreeMap::new();
    let counter = sink.pool().get().await?;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if let Some((rss, hwm)) = rss_kib(pid) {
            peak = peak.max(hwm).max(rss);
            let loaded: i64 = counter
                .query_one(
                    "SELECT coalesce(sum(rows), 0)::int8 FROM backfill.windows",
                    &[],
                )
                .await
                .map(|r| r.get(0))
                .unwrap_or(0);
            let tenth = (u64::try_from(loaded).unwrap_or(0) * 10) / records.max(1) as u64;
            let e = by_tenth.entry(tenth.min(10)).or_insert(0);
            *e = (*e).max(rss);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    drop(counter);

    let logs = std::fs::read_to_string(log.path())?;
    let events = |name: &str| {
        logs.lines()
            .filter(|l| l.contains(&format!("\"message\":\"{name}\"")))
            .count()
    };
    let stats = sim.stats();
    let mut by_fault: BTreeMap<String, u64> = BTreeMap::new();
    for r in sim.requests() {
        if let Some(f) = r.fault {
            *by_fault.entry(f).or_default() += 1;
        }
    }
    // Lost and extra ids, and the payloads, compared in SQL with the simulator's truth.
    let truth = sim.truth("Invoice");
    let ids: Vec<String> = truth.iter().map(|t| t.id.clone()).collect();
    let c = sink.pool().get().await?;
    let rows: i64 = c
        .query_one("SELECT count(*) FROM raw.qb_invoices", &[])
        .await?
        .get(0);
    let lost: i64 = c
        .query_one(
            "SELECT count(*) FROM unnest($1::text[]) t(id) \
             WHERE NOT EXISTS (SELECT 1 FROM raw.qb_invoices r WHERE r.id = t.id)",
            &[&ids],
        )
        .await?
        .get(0);
    let extra: i64 = c
        .query_one(
            "SELECT count(*) FROM raw.qb_invoices r \
             WHERE NOT EXISTS (SELECT 1 FROM unnest($1::text[]) t(id) WHERE t.id = r.id)",
            &[&ids],
        )
        .await?
        .get(0);
    let mut differing = 0i64;
    for chunk in truth.chunks(50_000) {
        let ids: Vec<&str> = chunk.iter().map(|t| t.id.as_str()).collect();
        let jsons: Vec<&str> = chunk.iter().map(|t| t.json.as_str()).collect();
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM unnest($1::text[], $2::text[]) t(id, j) \
                 JOIN raw.qb_invoices r ON r.id = t.id WHERE r.payload <> t.j::jsonb",
                &[&ids, &jsons],
            )
            .await?
            .get(0);
        differing += n;
    }
    let windows_not_done: i64 = c
        .query_one(
            "SELECT count(*) FROM backfill.windows WHERE status <> 'done'",
            &[],
        )
        .await?
        .get(0);
    drop(c);

    println!(
        "soak: {records} invoices, fault rate {rate}, exit {:?}",
        status.code()
    );
    println!(
        "  time {:.1}s, {:.0} rows/s",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  requests: {} query, {} token; faults injected {} {by_fault:?}",
        stats.endpoint_total("query"),
        stats.endpoint_total("token"),
        stats.faults_injected
    );
    println!(
        "  retries: {} client retries, {} window retries, {} database retries",
        events("retry"),
        events("window_retry") + events("probe_retry"),
        events("db_retry")
    );
    println!(
        "  rows {rows}, lost {lost}, duplicates/extra {extra}, payloads differing {differing}, windows not done {windows_not_done}"
    );
    println!("  peak RSS {:.1} MiB", mib(peak));
    let tenths: Vec<String> = by_tenth
        .iter()
        .map(|(t, kib)| format!("{}%:{:.0}", t * 10, mib(*kib)))
        .collect();
    println!("  RSS (MiB) by share of rows loaded: {}", tenths.join(" "));
    sim.shutdown().await?;
    if status.code() != Some(0) || lost != 0 || extra != 0 || differing != 0 {
        return Err("the soak did not end with an exact table".into());
    }
    Ok(())
}
