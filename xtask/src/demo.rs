//! `cargo xtask demo`: the main job end to end on a throwaway PostgreSQL and `qbo-sim`.
//!
//! Builds the binaries, starts (or reuses) the throwaway cluster and a simulator holding a sample
//! company, loads customers, items and invoices with their dedicated binaries and vendors with
//! the generic one, writes the volumetry report, re-runs the invoice range with `--force`,
//! reports again, and checks its own evidence: every table holds exactly the simulator's
//! records, every window matches its COUNT, the forced re-run wrote nothing, the totals did not
//! move, and the report agrees with direct SQL. Child processes are cleaned up on every exit
//! path, Ctrl-C included.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::pg;

pub(crate) const USAGE: &str = "\
usage: cargo xtask demo [--small] [--out DIR] [--keep]

  --small     a smaller sample company (what CI runs)
  --out DIR   where the evidence goes (default: ./evidence, git-ignored)
  --keep      leave the throwaway PostgreSQL running afterwards to explore the data with psql,
              and the status page (`qb-backfill serve` on a free loopback port) to look at it
";

/// Demo options.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The small sample.
    pub(crate) small: bool,
    /// Evidence directory (relative paths are relative to the workspace root).
    pub(crate) out: PathBuf,
    /// Keep the cluster running even if the demo started it.
    pub(crate) keep: bool,
    /// Leave `qb-backfill serve` running on the demo's database and print its address.
    pub(crate) serve: bool,
}

impl Options {
    pub(crate) fn parse(args: &[&str]) -> Result<Options> {
        let mut o = Options {
            small: false,
            out: PathBuf::from("evidence"),
            keep: false,
            serve: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match *a {
                "--small" => o.small = true,
                "--keep" => {
                    o.keep = true;
                    o.serve = true;
                }
                "--out" => {
                    o.out = PathBuf::from(it.next().context("--out needs a directory")?);
                }
                other => bail!("unknown demo option `{other}`\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

/// The sample company served by the simulator.
pub(crate) struct Sample {
    pub(crate) customers: u64,
    pub(crate) items: u64,
    pub(crate) vendors: u64,
    pub(crate) invoices: u64,
    pub(crate) start: &'static str,
    pub(crate) end: &'static str,
    pub(crate) database: &'static str,
}

const FULL: Sample = Sample {
    customers: 4_000,
    items: 2_000,
    vendors: 300,
    invoices: 40_000,
    start: "2024-01-01",
    end: "2024-07-01",
    database: "qb_demo",
};

const SMALL: Sample = Sample {
    customers: 300,
    items: 120,
    vendors: 40,
    invoices: 2_500,
    start: "2024-01-01",
    end: "2024-03-01",
    database: "qb_demo_small",
};

/// The pipelines of the demo: (label, binary, extra arguments, raw table, sample size).
fn pipelines(
    s: &Sample,
) -> [(
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    u64,
); 4] {
    [
        (
            "customers",
            "qb-customers-backfill",
            &[],
            "raw.qb_customers",
            s.customers,
        ),
        ("items", "qb-items-backfill", &[], "raw.qb_items", s.items),
        (
            "invoices",
            "qb-invoices-backfill",
            &[],
            "raw.qb_invoices",
            s.invoices,
        ),
        (
            "vendors (generic binary)",
            "qb-backfill",
            &["--entity", "Vendor"],
            "raw.qb_vendors",
            s.vendors,
        ),
    ]
}

/// The binaries the demo builds and runs.
const BINARIES: [&str; 5] = [
    "qb-customers-backfill",
    "qb-items-backfill",
    "qb-invoices-backfill",
    "qb-backfill",
    "qbo-sim",
];

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Ctrl-C (and SIGTERM) set a flag; waits notice it, kill their child and unwind, and the
/// guards below stop the simulator and the cluster.
pub(crate) fn install_interrupt_handler() {
    HANDLER.call_once(|| {
        if let Err(e) = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)) {
            eprintln!(
                "xtask: cannot install the Ctrl-C handler ({e}); Ctrl-C may leave qbo-sim running"
            );
        }
    });
}

fn check_interrupt(what: &str) -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted (Ctrl-C) {what}");
    }
    Ok(())
}

/// Waits for `child`, killing it if the user presses Ctrl-C.
fn wait(child: &mut Child, what: &str) -> Result<ExitStatus> {
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            // Ctrl-C reaches the whole process group: the child may have died of it first.
            check_interrupt(&format!("while {what}"))?;
            return Ok(status);
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            // The terminal's Ctrl-C reached the child too: give it a moment to stop cleanly
            // (a pipeline records its run as interrupted), then kill it.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            bail!("interrupted (Ctrl-C) while {what}");
        }
        std::thread::sleep(Duration::from_millis(30));
    }
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<ExitStatus> {
    let mut child = cmd.spawn().with_context(|| format!("starting {what}"))?;
    wait(&mut child, what)
}

/// Stops the cluster on drop when the demo started it.
struct ClusterGuard<'a> {
    cluster: &'a pg::Cluster,
    stop: bool,
}

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        if self.stop {
            match self.cluster.stop() {
                Ok(()) => eprintln!("xtask: stopped the throwaway PostgreSQL the demo started"),
                Err(e) => eprintln!("xtask: stopping the throwaway PostgreSQL failed: {e:#}"),
            }
        }
    }
}

/// The running simulator; killed on drop.
pub(crate) struct SimProcess {
    child: Child,
    env: Vec<(String, String)>,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimProcess {
    /// Starts `qbo-sim` and reads the `QBO_*=` lines it prints once it listens.
    pub(crate) fn start(bin: &Path, sample: &Sample, log: &Path) -> Result<SimProcess> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new(bin);
        cmd.args(["--port", "0", "--seed", "2024"])
            .args(["--customers", &sample.customers.to_string()])
            .args(["--items", &sample.items.to_string()])
            .args(["--vendors", &sample.vendors.to_string()])
            .args(["--invoices", &sample.invoices.to_string()])
            .args(["--start", sample.start, "--end", sample.end])
            // A local simulator: no per-minute budget (QBO's is 500); QBO's 10 in flight stays.
            .args(["--requests-per-min", "0", "--max-concurrency", "10"])
            .args(["--latency-ms", "5", "--jitter-ms", "10"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = cmd.spawn().context("starting qbo-sim")?;
        let stdout = child.stdout.take().context("qbo-sim stdout")?;
        let mut sim = SimProcess {
            child,
            env: Vec::new(),
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        while !sim.env.iter().any(|(k, _)| k == "QBO_ENV") {
            check_interrupt("while qbo-sim was starting")?;
            if let Some(status) = sim.child.try_wait()? {
                bail!("qbo-sim exited with {status}; see {}", log.display());
            }
            ensure!(
                Instant::now() < deadline,
                "qbo-sim printed no QBO_* lines within 60 s; see {}",
                log.display()
            );
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100))
                && let Some((k, v)) = line.split_once('=')
                && k.starts_with("QBO_")
            {
                sim.env.push((k.to_owned(), v.to_owned()));
            }
        }
        for var in [
            "QBO_BASE_URL",
            "QBO_TOKEN_URL",
            "QBO_CLIENT_ID",
            "QBO_CLIENT_SECRET",
            "QBO_REFRESH_TOKEN",
            "QBO_REALM_ID",
        ] {
            ensure!(
                sim.env.iter().any(|(k, _)| k == var),
                "qbo-sim did not print {var}"
            );
        }
        Ok(sim)
    }

    pub(crate) fn get(&self, key: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Everything the demo's child processes share.
struct Ctx<'a> {
    bin_dir: PathBuf,
    sim: &'a SimProcess,
    database_url: String,
    sample: &'a Sample,
}

impl Ctx<'_> {
    /// A pipeline binary with only the simulator's and the database's settings: variables of
    /// the caller's shell (a real company's `QBO_*_FILE`, `PG_*`) must not leak in.
    fn binary(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin_dir.join(name));
        c.env_clear();
        for (k, v) in &self.sim.env {
            c.env(k, v);
        }
        for keep in ["TERM", "COLUMNS", "NO_COLOR", "HOME"] {
            if let Ok(v) = std::env::var(keep) {
                c.env(keep, v);
            }
        }
        // Progress bar and warnings only; the events are in the ledger and the report.
        c.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("DATABASE_URL", &self.database_url)
        .stdin(Stdio::null());
        c
    }

    fn pipeline(&self, bin: &str, extra: &[&str], force: bool) -> Command {
        let mut c = self.binary(bin);
        c.args(extra)
            .args(["--start", self.sample.start, "--end", self.sample.end])
            .args(["--requests-per-min", "6000"]);
        if force {
            c.arg("--force");
        }
        c
    }

    fn report(&self, out: &Path) -> Result<Value> {
        let mut c = self.binary("qb-invoices-backfill");
        c.args(["report", "--all", "--out"]).arg(out);
        let status = run(&mut c, "writing the report")?;
        ensure!(
            status.success(),
            "report exited with {status}: the evidence shows problems"
        );
        let text = std::fs::read_to_string(out.join("report.json"))
            .with_context(|| format!("reading {}", out.join("report.json").display()))?;
        serde_json::from_str(&text).context("parsing report.json")
    }
}

fn banner(text: &str) {
    println!("\n==> {text}");
}

/// Runs the demo.
pub(crate) fn demo(root: &Path, opts: &Options) -> Result<()> {
    install_interrupt_handler();
    let sample = if opts.small { &SMALL } else { &FULL };
    let out = if opts.out.is_absolute() {
        opts.out.clone()
    } else {
        root.join(&opts.out)
    };

    banner("building the pipelines and qbo-sim (dev profile, optimised dependencies)");
    let started = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .current_dir(root)
        .args([
            "build",
            "-p",
            "bin-customers",
            "-p",
            "bin-items",
            "-p",
            "bin-invoices",
        ])
        .args(["-p", "bin-backfill", "-p", "qbo-sim"]);
    let status = run(&mut build, "building")?;
    ensure!(status.success(), "cargo build failed");
    let build_time = started.elapsed();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let target = if target.is_absolute() {
        target
    } else {
        root.join(target)
    };
    let bin_dir = target.join("debug");
    for b in BINARIES {
        ensure!(
            bin_dir.join(b).is_file(),
            "{} was not built",
            bin_dir.join(b).display()
        );
    }

    let run_started = Instant::now();
    banner("starting the throwaway PostgreSQL");
    let cluster = pg::Cluster::locate(root)?;
    let was_running = cluster.is_running()?;
    let admin_url = cluster.start()?;
    let _cluster_guard = ClusterGuard {
        cluster: &cluster,
        stop: !was_running && !opts.keep,
    };
    println!(
        "{} at {admin_url}",
        if was_running {
            "reusing the cluster"
        } else {
            "started a cluster"
        }
    );
    let database_url = database_url(&admin_url, sample.database)?;
    cluster.psql(
        &admin_url,
        &[
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", sample.database),
            &format!("CREATE DATABASE {}", sample.database),
        ],
    )?;
    println!("fresh database {}", sample.database);
    check_interrupt("after starting PostgreSQL")?;

    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    banner(&format!(
        "starting qbo-sim: a sample company with {} customers, {} items, {} vendors and {} invoices created {} .. {}",
        sample.customers, sample.items, sample.vendors, sample.invoices, sample.start, sample.end
    ));
    let sim = SimProcess::start(&bin_dir.join("qbo-sim"), sample, &out.join("qbo-sim.log"))?;
    println!(
        "listening at {} (realm {}); its log: {}",
        sim.get("QBO_BASE_URL"),
        sim.get("QBO_REALM_ID"),
        out.join("qbo-sim.log").display()
    );
    let ctx = Ctx {
        bin_dir: bin_dir.clone(),
        sim: &sim,
        database_url: database_url.clone(),
        sample,
    };

    let load_started = Instant::now();
    for (label, bin, extra, _, _) in pipelines(sample) {
        banner(&format!(
            "{label}: {bin} {}--start {} --end {}",
            extra.iter().map(|a| format!("{a} ")).collect::<String>(),
            sample.start,
            sample.end
        ));
        let t = Instant::now();
        let status = run(
            &mut ctx.pipeline(bin, extra, false),
            &format!("loading {label}"),
        )?;
        ensure!(status.success(), "{bin} exited with {status}");
        println!("{label}: done in {:.1} s", t.elapsed().as_secs_f64());
    }
    let load_time = load_started.elapsed();

    banner("volumetry report (every entity)");
    let initial_dir = out.join("initial");
    let initial = ctx.report(&initial_dir)?;

    banner(&format!(
        "re-running the invoice range {} .. {} with --force: every window is read again",
        sample.start, sample.end
    ));
    let t = Instant::now();
    let status = run(
        &mut ctx.pipeline("qb-invoices-backfill", &[], true),
        "re-running invoices",
    )?;
    ensure!(status.success(), "the forced re-run exited with {status}");
    let rerun_time = t.elapsed();
    println!("re-run done in {:.1} s", rerun_time.as_secs_f64());

    banner("volumetry report after the re-run");
    let last = ctx.report(&out)?;

    banner("checking the evidence");
    let checks = check(&ctx, &cluster, &initial, &last)?;
    for c in &checks {
        println!("  ok  {c}");
    }
    let total = run_started.elapsed();

    banner("done");
    println!(
        "demo: {:.1} s after the build ({:.1} s of build), loading {:.1} s, forced re-run {:.1} s",
        total.as_secs_f64(),
        build_time.as_secs_f64(),
        load_time.as_secs_f64(),
        rerun_time.as_secs_f64()
    );
    println!(
        "evidence: {} (report.md, report.json, rows_per_day.svg; before the re-run: {}; simulator log: qbo-sim.log)",
        out.display(),
        initial_dir.display()
    );
    if was_running || opts.keep {
        println!(
            "the data stays in the throwaway cluster: psql {database_url}   (stop it with `cargo xtask pg stop`)"
        );
    } else {
        println!(
            "the throwaway PostgreSQL is stopped now; `cargo xtask demo --keep` leaves it running to explore with psql"
        );
    }
    if opts.serve {
        let (pid, address) = start_status_page(&ctx, &out)?;
        println!(
            "\nthe status page of this data: {address}   (/metrics beside it; stop it with `kill {pid}`)"
        );
    }
    println!(
        "\nPoint the same binaries at a real QuickBooks Online company (docs/RUNBOOK.md):\n\
         \x20 export QBO_ENV=production QBO_REALM_ID=<company id> QBO_CLIENT_ID=<app client id>\n\
         \x20 export QBO_CLIENT_SECRET_FILE=/run/secrets/qbo_client_secret QBO_REFRESH_TOKEN_FILE=/run/secrets/qbo_refresh_token\n\
         \x20 export DATABASE_URL_FILE=/run/secrets/database_url    # or PG_HOST, PG_PORT, PG_DB, PG_USER, PG_PASSWORD_FILE\n\
         \x20 {bin}/qb-invoices-backfill --start 2023-01-01 --end 2024-01-01\n\
         \x20 {bin}/qb-backfill --entity Payment --start 2023-01-01 --end 2024-01-01\n\
         \x20 {bin}/qb-invoices-backfill report --all --out ./evidence\n\
         Without the simulator, leave QBO_BASE_URL / QBO_TOKEN_URL unset and keep the default limit\n\
         of 500 requests per minute (the demo lifts it because qbo-sim is local). For production\n\
         builds: `cargo build --release` or the Docker image (docker-compose.yml).",
        bin = bin_dir.display()
    );
    Ok(())
}

/// Starts `qb-backfill serve` on a free loopback port, in a process group of its own so that
/// it outlives the demo (and a later Ctrl-C in this terminal); returns its pid and address.
fn start_status_page(ctx: &Ctx<'_>, out: &Path) -> Result<(u32, String)> {
    use std::os::unix::process::CommandExt;
    let stdout_path = out.join("status-page.out");
    let log_path = out.join("status-page.log");
    let mut c = ctx.binary("qb-backfill");
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&log_path)?)
        .process_group(0);
    let mut child = c.spawn().context("starting qb-backfill serve")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        if let Some(address) = served_address(&text) {
            return Ok((child.id(), address.to_owned()));
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "qb-backfill serve exited with {status}; see {}",
                log_path.display()
            );
        }
        if Instant::now() >= deadline || INTERRUPTED.load(Ordering::SeqCst) {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "qb-backfill serve printed no address within 30 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The address in `serve`'s `status page: http://…/ (metrics: …)` line.
fn served_address(stdout: &str) -> Option<&str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("status page: "))
        .and_then(|l| l.split_whitespace().next())
        .filter(|a| a.starts_with("http://"))
}

/// `postgres://…/postgres` with the database name replaced.
pub(crate) fn database_url(admin_url: &str, db: &str) -> Result<String> {
    let cut = admin_url
        .rfind('/')
        .context("cluster URL has no database part")?;
    Ok(format!("{}/{db}", &admin_url[..cut]))
}

fn rows_by_table(report: &Value) -> Vec<(String, u64)> {
    report["tables"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    (
                        t["table"].as_str().unwrap_or_default().to_owned(),
                        t["rows"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The demo's own acceptance checks; returns what was checked.
fn check(
    ctx: &Ctx<'_>,
    cluster: &pg::Cluster,
    initial: &Value,
    last: &Value,
) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let before = rows_by_table(initial);
    let after = rows_by_table(last);
    for (_, _, _, table, expected) in pipelines(ctx.sample) {
        let got = after
            .iter()
            .find(|(t, _)| t == table)
            .map(|(_, n)| *n)
            .with_context(|| format!("{table} missing from report.json"))?;
        ensure!(
            got == expected,
            "{table} holds {got} rows, the simulator {expected}"
        );
        let direct =
            cluster.psql_value(&ctx.database_url, &format!("SELECT count(*) FROM {table}"))?;
        ensure!(
            direct == got.to_string(),
            "report says {got} rows in {table}, SELECT count(*) says {direct}"
        );
    }
    done.push(
        "every table holds exactly the simulator's records, and the report equals SELECT count(*)"
            .to_owned(),
    );
    ensure!(
        before == after,
        "the totals moved during the forced re-run: {before:?} → {after:?}"
    );
    done.push("the totals per table did not move during the forced re-run".to_owned());
    for (name, r) in [("first", initial), ("second", last)] {
        ensure!(r["ok"] == Value::Bool(true), "the {name} report is not OK");
        for p in r["pipelines"].as_array().into_iter().flatten() {
            let v = &p["verification"];
            ensure!(
                v["mismatch"] == 0 && v["not_done"] == 0 && v["windows"] == v["match"],
                "{}: {v}",
                p["pipeline"]
            );
        }
    }
    done.push("every window of every pipeline matches its source COUNT".to_owned());
    let rerun = last["reruns"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["pipeline"] == "qb_invoices_backfill"))
        .context("no re-run comparison for invoices in report.json")?;
    ensure!(
        rerun["latest"]["inserted"] == 0
            && rerun["latest"]["updated"] == 0
            && rerun["latest"]["unchanged"] == ctx.sample.invoices
            && rerun["previous"]["inserted"] == ctx.sample.invoices,
        "the forced re-run changed rows: {rerun}"
    );
    done.push(format!(
        "the forced re-run read {} invoices and inserted 0, updated 0",
        ctx.sample.invoices
    ));
    for b in BINARIES {
        let o = Command::new(ctx.bin_dir.join(b))
            .arg("--help")
            .output()
            .with_context(|| format!("running {b} --help"))?;
        let text = String::from_utf8_lossy(&o.stdout).to_lowercase();
        ensure!(
            o.status.success() && text.contains("example"),
            "{b} --help shows no example"
        );
    }
    done.push("--help of every binary shows examples".to_owned());
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let o = Options::parse(&["--small", "--out", "/tmp/x", "--keep"]).unwrap();
        assert!(o.small && o.keep && o.serve);
        assert_eq!(o.out, PathBuf::from("/tmp/x"));
        let d = Options::parse(&[]).unwrap();
        assert!(!d.small && !d.keep && !d.serve);
        assert_eq!(d.out, PathBuf::from("evidence"));
        assert!(Options::parse(&["--out"]).is_err());
        assert!(Options::parse(&["--big"]).is_err());
    }

    #[test]
    fn the_served_address_is_read_from_serves_line() {
        let out =
            "status page: http://127.0.0.1:41234/ (metrics: http://127.0.0.1:41234/metrics)\n";
        assert_eq!(served_address(out), Some("http://127.0.0.1:41234/"));
        assert_eq!(served_address(""), None);
        assert_eq!(served_address("status page: \n"), None);
    }

    #[test]
    fn database_url_replaces_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5999/postgres", "qb_demo").unwrap(),
            "postgres://postgres@127.0.0.1:5999/qb_demo"
        );
    }

    #[test]
    fn samples_are_what_the_issue_asks() {
        // Thousands of customers and items, tens of thousands of invoices, several months.
        const { assert!(FULL.customers >= 1_000 && FULL.items >= 1_000 && FULL.invoices >= 10_000) };
        assert!(FULL.end > "2024-04-01" && SMALL.invoices < FULL.invoices);
        let report = serde_json::json!({"tables": [{"table": "raw.qb_items", "rows": 7}]});
        assert_eq!(rows_by_table(&report), vec![("raw.qb_items".to_owned(), 7)]);
    }
}
