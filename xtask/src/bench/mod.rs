//! `cargo xtask bench`: the performance scenarios of issue 7, measured end to end.
//!
//! Every scenario starts the release `qbo-sim` binary, creates a fresh database on the
//! throwaway cluster, runs the release `qb-invoices-backfill` binary under `/usr/bin/time`
//! (wall, CPU and peak RSS of the pipeline process), and reads the simulator's statistics
//! (`/__sim/stats`) and PostgreSQL's (`pg_stat_user_tables`, WAL position). Figures are
//! printed as each scenario ends, then as one table, and written to `target/bench/`
//! (`results.json`, `results.md`). Targets are reported, never asserted: a benchmark that
//! misses one still exits 0 (a scenario that cannot run exits 1).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::pg;

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [SCENARIO...] [--quick] [--concurrency N] [--keep]

scenarios (default: all, in this order):
  ingest   200k invoices over one year, simulator at zero latency and no API limits, into a fresh
           database; rows/s, MB/s, CPU, peak RSS, and the PostgreSQL COPY floor for the same rows
  api      50k invoices over three years, 250 ms +- 50 ms per request, QBO's limits on (500/min,
           10 in flight): achieved requests/min, 429s, wall vs the theoretical minimum
  sparse   three years planned, data in two months: QBO requests used
  rerun    the ingest range again with --force: wall time, rows written, WAL written
  scale    1M invoices over five years: peak RSS (compare with ingest) and rows/s

options:
  --quick          smaller datasets (ingest 50k, api 10k, scale 250k) for a fast look
  --concurrency N  pass --concurrency N to every pipeline run (default: the pipeline's default)
  --keep           keep the benchmark databases (qb_bench_*) afterwards
";

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Ingest,
    Api,
    Sparse,
    Rerun,
    Scale,
}

impl Scenario {
    const ALL: [Scenario; 5] = [
        Scenario::Ingest,
        Scenario::Api,
        Scenario::Sparse,
        Scenario::Rerun,
        Scenario::Scale,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Api => "api",
            Scenario::Sparse => "sparse",
            Scenario::Rerun => "rerun",
            Scenario::Scale => "scale",
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Parsed command line.
#[derive(Debug)]
struct Options {
    scenarios: Vec<Scenario>,
    quick: bool,
    concurrency: Option<u32>,
    keep: bool,
}

fn parse_args(args: &[&str]) -> Result<Options> {
    let mut o = Options {
        scenarios: Vec::new(),
        quick: false,
        concurrency: None,
        keep: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--quick" => o.quick = true,
            "--keep" => o.keep = true,
            "--concurrency" => {
                let v = it.next().context("--concurrency needs a value")?;
                let n: u32 =
                    v.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("--concurrency {v:?} is not a positive integer")
                    })?;
                o.concurrency = Some(n);
            }
            other => match Scenario::parse(other) {
                Some(s) if !o.scenarios.contains(&s) => o.scenarios.push(s),
                Some(_) => {}
                None => bail!("unknown bench argument `{other}`\n{USAGE}"),
            },
        }
    }
    if o.scenarios.is_empty() {
        o.scenarios = Scenario::ALL.to_vec();
    } else {
        // Always run in the documented order (rerun after ingest, scale last).
        o.scenarios
            .sort_by_key(|s| Scenario::ALL.iter().position(|x| x == s));
    }
    Ok(o)
}

/// Dataset sizes of one bench run.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    ingest: u64,
    api: u64,
    sparse: u64,
    scale: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                ingest: 50_000,
                api: 10_000,
                sparse: 20_000,
                scale: 250_000,
            }
        } else {
            Sizes {
                ingest: 200_000,
                api: 50_000,
                sparse: 20_000,
                scale: 1_000_000,
            }
        }
    }
}

/// A measured value.
#[derive(Debug, Clone)]
struct Figure {
    key: &'static str,
    value: f64,
    unit: &'static str,
}

/// A target of the issue and whether this run met it.
#[derive(Debug, Clone)]
struct Target {
    what: String,
    met: bool,
}

/// What one scenario measured.
#[derive(Debug, Default)]
struct Outcome {
    figures: Vec<Figure>,
    targets: Vec<Target>,
    commands: Vec<String>,
    notes: Vec<String>,
}

impl Outcome {
    fn fig(&mut self, key: &'static str, value: f64, unit: &'static str) {
        self.figures.push(Figure { key, value, unit });
    }

    fn target(&mut self, what: impl Into<String>, met: bool) {
        self.targets.push(Target {
            what: what.into(),
            met,
        });
    }

    fn get(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }
}

/// Where things are.
struct Env {
    root: PathBuf,
    out_dir: PathBuf,
    sim_bin: PathBuf,
    pipeline_bin: PathBuf,
    psql: PathBuf,
    time_bin: PathBuf,
    admin_url: String,
    clk_tck: f64,
    opts: Options,
    sizes: Sizes,
}

/// `cargo xtask bench ...`.
pub(crate) fn bench(root: &Path, args: &[&str]) -> Result<ExitCode> {
    if args.iter().any(|a| matches!(*a, "-h" | "--help" | "help")) {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let opts = parse_args(args)?;
    let time_bin = PathBuf::from("/usr/bin/time");
    if !time_bin.is_file() {
        bail!(
            "/usr/bin/time (GNU time) measures the pipeline's CPU time and peak RSS; install it with: apt-get install -y time"
        );
    }
    let psql = find_psql()?;

    eprintln!("xtask bench: building the release binaries (qbo-sim, qb-invoices-backfill)");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "qbo-sim",
            "-p",
            "bin-invoices",
            "--bins",
        ])
        .current_dir(root)
        .status()
        .context("running cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release failed");
    }
    let target_dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let release = target_dir.join("release");
    let out_dir = target_dir.join("bench");
    fs::create_dir_all(out_dir.join("logs"))
        .with_context(|| format!("creating {}", out_dir.display()))?;

    let cluster = pg::Cluster::locate(root)?;
    let was_running = cluster.is_running()?;
    let admin_url = cluster.start()?;
    eprintln!("xtask bench: PostgreSQL at {admin_url}");

    let env = Env {
        root: root.to_path_buf(),
        out_dir,
        sim_bin: release.join("qbo-sim"),
        pipeline_bin: release.join("qb-invoices-backfill"),
        psql,
        time_bin,
        admin_url,
        clk_tck: clock_ticks(),
        sizes: Sizes::new(opts.quick),
        opts,
    };
    let result = run_all(&env);
    if !was_running && let Err(e) = cluster.stop() {
        eprintln!("xtask bench: stopping the throwaway cluster failed: {e:#}");
    }
    result
}

fn run_all(env: &Env) -> Result<ExitCode> {
    let machine = machine_info(env);
    eprintln!(
        "xtask bench: {} core(s), {:.1} GiB memory, load {}{}",
        machine["cores"],
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["load_at_start"].as_str().unwrap_or("?"),
        if env.opts.quick {
            " — QUICK mode (smaller datasets)"
        } else {
            ""
        }
    );
    let mut results: Vec<(Scenario, Result<Outcome>)> = Vec::new();
    let mut ingest: Option<IngestFixture> = None;
    for &s in &env.opts.scenarios {
        eprintln!("\n== {} ==", s.name());
        let load = loadavg();
        let outcome = match s {
            Scenario::Ingest => scenario_ingest(env, &mut ingest),
            Scenario::Api => scenario_api(env),
            Scenario::Sparse => scenario_sparse(env),
            Scenario::Rerun => scenario_rerun(env, &mut ingest),
            Scenario::Scale => {
                // Free the ingest data first: the scale run is the big one.
                if let Some(f) = ingest.take() {
                    f.finish(env);
                }
                let ingest_rss = results
                    .iter()
                    .find(|(s, _)| *s == Scenario::Ingest)
                    .and_then(|(_, r)| r.as_ref().ok())
                    .and_then(|o| o.get("peak_rss_mb"));
                scenario_scale(env, ingest_rss)
            }
        };
        let outcome = outcome.map(|mut o| {
            o.notes.push(format!("load average at start: {load}"));
            o
        });
        match &outcome {
            Ok(o) => print_outcome(s, o),
            Err(e) => eprintln!("{}: FAILED: {e:#}", s.name()),
        }
        results.push((s, outcome));
    }
    if let Some(f) = ingest.take() {
        f.finish(env);
    }
    let mut machine = machine;
    machine["load_at_end"] = json!(loadavg());

    let table = markdown_table(env, &machine, &results);
    println!("\n{table}");
    let json = results_json(env, &machine, &results);
    let json_path = env.out_dir.join("results.json");
    fs::write(&json_path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    let md_path = env.out_dir.join("results.md");
    fs::write(&md_path, &table).with_context(|| format!("writing {}", md_path.display()))?;
    eprintln!(
        "xtask bench: wrote {} and {}",
        json_path.display(),
        md_path.display()
    );
    if results.iter().all(|(_, r)| r.is_ok()) {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

/// The simulator and database of the ingest load, kept for the re-run.
struct IngestFixture {
    sim: Sim,
    db: String,
    args: Vec<String>,
}

impl IngestFixture {
    fn finish(self, env: &Env) {
        drop(self.sim);
        if !env.opts.keep {
            let _ = drop_database(env, &self.db);
        }
    }
}

const INGEST_START: &str = "2024-01-01";
const INGEST_END: &str = "2025-01-01";

/// Simulator arguments for `n` invoices created in `[start, end)`, answered at once and without
/// rate or concurrency limits.
fn unlimited_sim_args(n: u64, start: &str, end: &str) -> Vec<String> {
    strings(&[
        "--invoices",
        &n.to_string(),
        "--start",
        start,
        "--end",
        end,
        "--latency-ms",
        "0",
        "--requests-per-min",
        "0",
        "--max-concurrency",
        "0",
    ])
}

/// Pipeline flags that lift the client's own pacing (the simulator has no limits here).
fn unlimited_client_flags() -> Vec<String> {
    strings(&["--requests-per-min", "6000000", "--max-in-flight", "1000"])
}

fn pipeline_args(
    env: &Env,
    start: &str,
    end: &str,
    trigger: &str,
    extra: &[String],
) -> Vec<String> {
    let mut a = strings(&[
        "--start",
        start,
        "--end",
        end,
        "--log-format",
        "json",
        "--trigger",
        trigger,
    ]);
    a.extend_from_slice(extra);
    if let Some(c) = env.opts.concurrency {
        a.push("--concurrency".into());
        a.push(c.to_string());
    }
    a
}

fn start_ingest_fixture(env: &Env, out: &mut Outcome, for_rerun: bool) -> Result<IngestFixture> {
    let n = env.sizes.ingest;
    let sim_args = unlimited_sim_args(n, INGEST_START, INGEST_END);
    let sim = Sim::start(env, "ingest", &sim_args)?;
    let db = "qb_bench_ingest".to_owned();
    create_database(env, &db)?;
    let args = pipeline_args(
        env,
        INGEST_START,
        INGEST_END,
        "bench-ingest",
        &unlimited_client_flags(),
    );
    if for_rerun {
        eprintln!("rerun: loading the ingest dataset first ({n} invoices)");
    }
    let run = run_pipeline(
        env,
        &sim,
        &db,
        &args,
        if for_rerun { "setup" } else { "ingest" },
    )?;
    let loaded = table_rows(env, &db, "raw.qb_invoices")?;
    if loaded != n {
        bail!("the ingest load holds {loaded} rows, {n} expected");
    }
    if !for_rerun {
        let stats = sim.stats()?;
        let bytes = stat_u64(&stats, "bytes_served");
        let requests = endpoint_total(&stats, "query");
        let wall = run.wall.as_secs_f64();
        out.fig("rows", n as f64, "rows");
        out.fig("wall", wall, "s");
        out.fig("rows_per_s", n as f64 / wall, "rows/s");
        out.fig("payload_mb", bytes as f64 / 1e6, "MB");
        out.fig("payload_mb_per_s", bytes as f64 / 1e6 / wall, "MB/s");
        out.fig("requests", requests as f64, "requests");
        out.fig("cpu_user", run.user, "s");
        out.fig("cpu_sys", run.sys, "s");
        out.fig("peak_rss_mb", run.max_rss_kb as f64 / 1024.0, "MB");
        out.fig("sim_cpu", run.sim_cpu, "s");
        out.fig("machine_busy_cores", run.machine_busy_cores, "cores");
        out.fig(
            "table_mb",
            relation_size(env, &db, "raw.qb_invoices")? as f64 / 1e6,
            "MB",
        );
        out.commands.push(sim.command(env));
        out.commands.push(run.command.clone());
    }
    Ok(IngestFixture { sim, db, args })
}

fn scenario_ingest(env: &Env, slot: &mut Option<IngestFixture>) -> Result<Outcome> {
    let mut out = Outcome::default();
    let fixture = start_ingest_fixture(env, &mut out, false)?;
    let db = fixture.db.clone();
    *slot = Some(fixture);

    // The floor: the same rows, COPY'd into an identical table on the same cluster, by one
    // stream (one backend, as a plain `COPY` does) and by one stream per core (the pipeline
    // runs several windows at once, so this is the fair comparison on a multi-core machine).
    let rows = out.get("rows").unwrap_or(0.0);
    let single = copy_floor(env, &db, 1)?;
    let parallel = copy_floor(env, &db, cores())?;
    let wall = out.get("wall").unwrap_or(f64::NAN);
    let floor = single.min(parallel);
    out.fig("copy_wall_1_stream", single, "s");
    out.fig("copy_wall_per_core", parallel, "s");
    out.fig("copy_rows_per_s", rows / floor, "rows/s");
    out.fig("pipeline_div_copy", wall / floor, "x");
    out.target(
        format!(
            "pipeline wall <= 2x the COPY floor ({:.2}x the faster of 1 and {} streams)",
            wall / floor,
            cores()
        ),
        wall / floor <= 2.0,
    );
    let compression = psql(
        env,
        &db,
        "SELECT string_agg(DISTINCT pg_column_compression(payload), ',') FROM raw.qb_invoices",
    )?;
    out.notes.push(format!(
        "payload TOAST compression: {compression}; the COPY table is LIKE raw.qb_invoices INCLUDING ALL"
    ));
    out.commands.push(format!(
        "psql {} -c \"\\copy (SELECT * FROM raw.qb_invoices) TO 'rows.copy'\" && psql ... -c \"\\copy <identical table> FROM 'rows.copy'\" (1 stream, then {} streams split by hashtext(id))",
        db_url(env, &db),
        cores()
    ));
    Ok(out)
}

/// COPYs the loaded rows into a fresh identical table with `streams` concurrent psql processes
/// and returns the wall time of the loads.
fn copy_floor(env: &Env, db: &str, streams: usize) -> Result<f64> {
    let streams = streams.max(1);
    let files: Vec<PathBuf> = (0..streams)
        .map(|k| env.out_dir.join(format!("ingest-rows-{k}.copy")))
        .collect();
    for (k, f) in files.iter().enumerate() {
        psql(
            env,
            db,
            &format!(
                "\\copy (SELECT * FROM raw.qb_invoices WHERE abs(hashtext(id)::int8) % {streams} = {k}) TO '{}'",
                f.display()
            ),
        )?;
    }
    psql(
        env,
        db,
        "DROP SCHEMA IF EXISTS bench_floor CASCADE; CREATE SCHEMA bench_floor; \
         CREATE TABLE bench_floor.qb_invoices (LIKE raw.qb_invoices INCLUDING ALL); CHECKPOINT",
    )?;
    let t = Instant::now();
    let children: Vec<Child> = files
        .iter()
        .map(|f| {
            Command::new(&env.psql)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
                .arg(db_url(env, db))
                .arg("-c")
                .arg(format!(
                    "\\copy bench_floor.qb_invoices FROM '{}'",
                    f.display()
                ))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .context("starting psql")
        })
        .collect::<Result<_>>()?;
    let mut ok = true;
    for mut c in children {
        ok &= c.wait().context("waiting for psql")?.success();
    }
    let secs = t.elapsed().as_secs_f64();
    for f in &files {
        let _ = fs::remove_file(f);
    }
    if !ok {
        bail!("a COPY stream failed");
    }
    let copied = table_rows(env, db, "bench_floor.qb_invoices")?;
    let expected = table_rows(env, db, "raw.qb_invoices")?;
    if copied != expected {
        bail!("COPY loaded {copied} rows, {expected} expected");
    }
    psql(env, db, "DROP SCHEMA bench_floor CASCADE")?;
    eprintln!("ingest: COPY floor with {streams} stream(s): {secs:.2} s");
    Ok(secs)
}

fn scenario_rerun(env: &Env, slot: &mut Option<IngestFixture>) -> Result<Outcome> {
    let mut out = Outcome::default();
    if slot.is_none() {
        *slot = Some(start_ingest_fixture(env, &mut out, true)?);
    }
    let Some(fixture) = slot.as_ref() else {
        bail!("no ingest fixture");
    };
    let db = &fixture.db;
    fixture.sim.post("/__sim/stats/reset")?;
    psql(env, db, "CHECKPOINT")?;
    let before = tuple_counters(env, db, "raw.qb_invoices")?;
    let wal0 = wal_lsn(env, db)?;
    let mut args = fixture.args.clone();
    args.push("--force".into());
    let run = run_pipeline(env, &fixture.sim, db, &args, "rerun")?;
    let wal = wal_lsn_diff(env, db, &wal0)?;
    // Counters reach pg_stat views when backends report them: the pipeline's have exited.
    let after = tuple_counters(env, db, "raw.qb_invoices")?;
    let written = (after.0 - before.0) + (after.1 - before.1);
    let finished = &run.finished;
    let stats = fixture.sim.stats()?;
    out.fig("wall", run.wall.as_secs_f64(), "s");
    out.fig("rows_received", stat_f64(finished, "rows"), "rows");
    out.fig("inserted", stat_f64(finished, "inserted"), "rows");
    out.fig("updated", stat_f64(finished, "updated"), "rows");
    out.fig("unchanged", stat_f64(finished, "unchanged"), "rows");
    out.fig("rows_written_pg", written as f64, "rows");
    out.fig("wal_mb_cluster", wal as f64 / 1e6, "MB");
    out.fig(
        "requests",
        endpoint_total(&stats, "query") as f64,
        "requests",
    );
    out.fig("cpu_user", run.user, "s");
    out.fig("peak_rss_mb", run.max_rss_kb as f64 / 1024.0, "MB");
    out.target(
        format!("re-run writes zero rows ({written})"),
        written == 0
            && stat_f64(finished, "inserted") == 0.0
            && stat_f64(finished, "updated") == 0.0,
    );
    out.notes.push(
        "rows_written_pg = n_tup_ins + n_tup_upd of raw.qb_invoices; WAL is cluster-wide (other \
         databases' activity included)"
            .into(),
    );
    out.commands.push(fixture.sim.command(env));
    out.commands.push(run.command.clone());
    Ok(out)
}

fn scenario_api(env: &Env) -> Result<Outcome> {
    let mut out = Outcome::default();
    let n = env.sizes.api;
    let (start, end) = ("2022-01-01", "2025-01-01");
    let sim_args = strings(&[
        "--invoices",
        &n.to_string(),
        "--start",
        start,
        "--end",
        end,
        "--latency-ms",
        "200",
        "--jitter-ms",
        "100",
        "--requests-per-min",
        "500",
        "--max-concurrency",
        "10",
    ]);
    let sim = Sim::start(env, "api", &sim_args)?;
    let db = "qb_bench_api";
    create_database(env, db)?;
    let args = pipeline_args(env, start, end, "bench-api", &[]);
    let run = run_pipeline(env, &sim, db, &args, "api")?;
    let stats = sim.stats()?;
    let loaded = table_rows(env, db, "raw.qb_invoices")?;
    let requests = endpoint_total(&stats, "query");
    let throttled = stat_u64(&stats, "throttled");
    let wall = run.wall.as_secs_f64();
    let run_secs = stat_f64(&run.finished, "duration_ms") / 1000.0;
    let per_min = requests as f64 / (wall / 60.0);
    let minimum = requests.saturating_sub(1) as f64 * 60.0 / 500.0;
    out.fig("rows", loaded as f64, "rows");
    out.fig("requests", requests as f64, "requests");
    out.fig(
        "count_queries",
        stat_f64(&stats, "count_queries"),
        "requests",
    );
    out.fig("select_queries", stat_f64(&stats, "queries"), "requests");
    out.fig("throttled_429", throttled as f64, "responses");
    out.fig(
        "peak_in_flight",
        stat_f64(&stats, "peak_concurrency"),
        "requests",
    );
    out.fig("wall", wall, "s");
    out.fig("run_duration", run_secs, "s");
    out.fig("requests_per_min", per_min, "req/min");
    out.fig("budget_used_pct_wall", per_min / 500.0 * 100.0, "%");
    out.fig("theoretical_min", minimum, "s");
    out.fig("wall_div_min", wall / minimum.max(f64::MIN_POSITIVE), "x");
    // The budget is spent while queries flow: from the first query's arrival at the simulator
    // to the last one's response (no process start, migrations, OAuth refresh or final write).
    let phase = query_phase(&sim.http("GET", "/__sim/requests")?);
    let phase_per_min = phase
        .filter(|(_, secs)| *secs > 0.0)
        .map(|(n, secs)| n as f64 / secs * 60.0);
    if let (Some((_, secs)), Some(rate)) = (phase, phase_per_min) {
        out.fig("api_phase", secs, "s");
        out.fig("api_phase_requests_per_min", rate, "req/min");
        out.fig("budget_used_pct_api_phase", rate / 5.0, "%");
    }
    out.fig("peak_rss_mb", run.max_rss_kb as f64 / 1024.0, "MB");
    let rate = phase_per_min.unwrap_or(per_min);
    out.target(
        format!(
            "requests/min while querying >= 90% of 500 ({:.0}%; end to end {:.0}%)",
            rate / 5.0,
            per_min / 5.0
        ),
        rate >= 450.0,
    );
    out.target(format!("zero 429s ({throttled})"), throttled == 0);
    if loaded != n {
        out.notes
            .push(format!("WARNING: {loaded} rows loaded, {n} expected"));
    }
    out.notes.push(format!(
        "theoretical minimum = (requests - 1) x 60 s / 500 for the requests this run needed; \
         simulator latency 200 ms + uniform 0..100 ms{}",
        if env.opts.quick {
            "; QUICK mode: 10k invoices instead of 50k"
        } else {
            ""
        }
    ));
    out.commands.push(sim.command(env));
    out.commands.push(run.command.clone());
    drop(sim);
    if !env.opts.keep {
        drop_database(env, db)?;
    }
    Ok(out)
}

fn scenario_sparse(env: &Env) -> Result<Outcome> {
    let mut out = Outcome::default();
    let n = env.sizes.sparse;
    let sim_args = unlimited_sim_args(n, "2023-03-01", "2023-05-01");
    let sim = Sim::start(env, "sparse", &sim_args)?;
    let db = "qb_bench_sparse";
    create_database(env, db)?;
    let args = pipeline_args(
        env,
        "2022-01-01",
        "2025-01-01",
        "bench-sparse",
        &unlimited_client_flags(),
    );
    let run = run_pipeline(env, &sim, db, &args, "sparse")?;
    let stats = sim.stats()?;
    let loaded = table_rows(env, db, "raw.qb_invoices")?;
    let requests = endpoint_total(&stats, "query");
    out.fig("rows", loaded as f64, "rows");
    out.fig("windows", 1096.0, "windows");
    out.fig("requests", requests as f64, "requests");
    out.fig(
        "count_queries",
        stat_f64(&stats, "count_queries"),
        "requests",
    );
    out.fig("select_queries", stat_f64(&stats, "queries"), "requests");
    out.fig("min_select_pages", (n as f64 / 1000.0).ceil(), "requests");
    out.fig("wall", run.wall.as_secs_f64(), "s");
    out.target(format!("< 100 requests ({requests})"), requests < 100);
    if loaded != n {
        out.notes
            .push(format!("WARNING: {loaded} rows loaded, {n} expected"));
    }
    out.notes.push(format!(
        "{n} invoices created 2023-03-01..2023-05-01, range 2022-01-01..2025-01-01 (daily windows)"
    ));
    out.commands.push(sim.command(env));
    out.commands.push(run.command.clone());
    drop(sim);
    if !env.opts.keep {
        drop_database(env, db)?;
    }
    Ok(out)
}

fn scenario_scale(env: &Env, ingest_rss: Option<f64>) -> Result<Outcome> {
    let mut out = Outcome::default();
    let n = env.sizes.scale;
    let (start, end) = ("2020-01-01", "2025-01-01");
    let sim_args = unlimited_sim_args(n, start, end);
    let sim = Sim::start(env, "scale", &sim_args)?;
    let db = "qb_bench_scale";
    create_database(env, db)?;
    let args = pipeline_args(env, start, end, "bench-scale", &unlimited_client_flags());
    let run = run_pipeline(env, &sim, db, &args, "scale")?;
    let stats = sim.stats()?;
    let loaded = table_rows(env, db, "raw.qb_invoices")?;
    let wall = run.wall.as_secs_f64();
    let rss = run.max_rss_kb as f64 / 1024.0;
    out.fig("rows", loaded as f64, "rows");
    out.fig("wall", wall, "s");
    out.fig("rows_per_s", loaded as f64 / wall, "rows/s");
    out.fig(
        "payload_mb_per_s",
        stat_f64(&stats, "bytes_served") / 1e6 / wall,
        "MB/s",
    );
    out.fig(
        "requests",
        endpoint_total(&stats, "query") as f64,
        "requests",
    );
    out.fig("cpu_user", run.user, "s");
    out.fig("cpu_sys", run.sys, "s");
    out.fig("peak_rss_mb", rss, "MB");
    out.fig("sim_cpu", run.sim_cpu, "s");
    out.fig("machine_busy_cores", run.machine_busy_cores, "cores");
    out.target(format!("peak RSS < 100 MB ({rss:.0} MB)"), rss < 100.0);
    if let Some(small) = ingest_rss {
        out.fig("rss_vs_ingest", rss / small, "x");
        out.target(
            format!("RSS flat vs the ingest run ({rss:.0} MB vs {small:.0} MB)"),
            rss <= small * 1.25 + 5.0,
        );
    }
    if loaded != n {
        out.notes
            .push(format!("WARNING: {loaded} rows loaded, {n} expected"));
    }
    out.commands.push(sim.command(env));
    out.commands.push(run.command.clone());
    drop(sim);
    if !env.opts.keep {
        drop_database(env, db)?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The simulator
// ---------------------------------------------------------------------------------------------

/// A running `qbo-sim` process (killed when dropped).
struct Sim {
    child: Child,
    addr: String,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl Sim {
    fn start(env: &Env, name: &str, args: &[String]) -> Result<Sim> {
        let log = fs::File::create(env.out_dir.join("logs").join(format!("sim-{name}.log")))
            .context("creating the simulator log")?;
        let started = Instant::now();
        let mut child = Command::new(&env.sim_bin)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", env.sim_bin.display()))?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut reader = BufReader::new(stdout);
        let mut vars = Vec::new();
        loop {
            let mut line = String::new();
            let n = reader
                .read_line(&mut line)
                .context("reading the simulator's output")?;
            if n == 0 {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "qbo-sim exited before printing its settings (see target/bench/logs/sim-{name}.log)"
                );
            }
            if let Some((k, v)) = line.trim().split_once('=') {
                vars.push((k.to_owned(), v.to_owned()));
                if k == "QBO_ENV" {
                    break;
                }
            }
        }
        let base = vars
            .iter()
            .find(|(k, _)| k == "QBO_BASE_URL")
            .map(|(_, v)| v.clone())
            .context("qbo-sim printed no QBO_BASE_URL")?;
        let addr = base
            .strip_prefix("http://")
            .context("QBO_BASE_URL is not http://")?
            .trim_end_matches('/')
            .to_owned();
        eprintln!(
            "{name}: qbo-sim ready at {base} after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Sim {
            child,
            addr,
            env: vars,
            args: args.to_vec(),
        })
    }

    fn command(&self, env: &Env) -> String {
        format!(
            "{} {} > sim.env &",
            rel(env, &env.sim_bin),
            self.args.join(" ")
        )
    }

    fn http(&self, method: &str, path: &str) -> Result<Value> {
        let mut s = TcpStream::connect(&self.addr)
            .with_context(|| format!("connecting to the simulator at {}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.addr
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .context("reading the simulator's answer")?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("malformed HTTP answer from the simulator")?;
        let status = head.split_whitespace().nth(1).unwrap_or("?");
        if !status.starts_with('2') {
            bail!("{method} {path} answered {status}");
        }
        if status == "204" || body.trim().is_empty() {
            return Ok(Value::Null);
        }
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)?
        } else {
            body.to_owned()
        };
        serde_json::from_str(&body).with_context(|| format!("decoding {path}"))
    }

    fn stats(&self) -> Result<Value> {
        self.http("GET", "/__sim/stats")
    }

    fn post(&self, path: &str) -> Result<()> {
        self.http("POST", path).map(|_| ())
    }

    fn cpu_secs(&self, clk_tck: f64) -> f64 {
        proc_cpu_secs(self.child.id(), clk_tck).unwrap_or(f64::NAN)
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dechunk(body: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size, tail) = rest.split_once("\r\n").context("bad chunk")?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        let chunk = tail.get(..n).context("short chunk")?;
        out.push_str(chunk);
        rest = tail.get(n + 2..).unwrap_or("");
    }
}

// ---------------------------------------------------------------------------------------------
// The pipeline process
// ---------------------------------------------------------------------------------------------

/// One measured pipeline run.
struct Run {
    wall: Duration,
    user: f64,
    sys: f64,
    max_rss_kb: u64,
    sim_cpu: f64,
    machine_busy_cores: f64,
    finished: Value,
    command: String,
}

fn run_pipeline(env: &Env, sim: &Sim, db: &str, args: &[String], label: &str) -> Result<Run> {
    let url = db_url(env, db);
    let logs = env.out_dir.join("logs");
    let log_path = logs.join(format!("pipeline-{label}.log"));
    let time_path = logs.join(format!("time-{label}.txt"));
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = Command::new(&env.time_bin);
    cmd.arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(&time_path)
        .arg(&env.pipeline_bin)
        .args(args)
        .env("DATABASE_URL", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .current_dir(&env.root);
    for (k, v) in &sim.env {
        cmd.env(k, v);
    }
    let command = format!(
        "env $(cat sim.env) DATABASE_URL={url} {} {}",
        rel(env, &env.pipeline_bin),
        args.join(" ")
    );
    eprintln!("{label}: {command}");
    let cpu0 = machine_cpu();
    let sim0 = sim.cpu_secs(env.clk_tck);
    let t = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("running {}", env.pipeline_bin.display()))?;
    let wall = t.elapsed();
    let sim_cpu = sim.cpu_secs(env.clk_tck) - sim0;
    let machine_busy_cores = match (cpu0, machine_cpu()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            (b1 - b0) as f64 / (t1 - t0) as f64 * cores() as f64
        }
        _ => f64::NAN,
    };
    if !status.success() {
        bail!(
            "the pipeline exited with {status}; see {}",
            log_path.display()
        );
    }
    let timing = fs::read_to_string(&time_path)
        .with_context(|| format!("reading {}", time_path.display()))?;
    let fields: Vec<&str> = timing
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let [_, user, sys, rss] = fields[..] else {
        bail!("unexpected /usr/bin/time output {timing:?}");
    };
    let finished = finished_event(&log_path)?;
    if finished["status"] != "succeeded" {
        bail!(
            "the pipeline finished with status {}; see {}",
            finished["status"],
            log_path.display()
        );
    }
    eprintln!(
        "{label}: {:.2} s wall, {user} s user, {sys} s sys, peak RSS {} MB",
        wall.as_secs_f64(),
        rss.parse::<u64>().unwrap_or(0) / 1024
    );
    Ok(Run {
        wall,
        user: user.parse().unwrap_or(f64::NAN),
        sys: sys.parse().unwrap_or(f64::NAN),
        max_rss_kb: rss.parse().unwrap_or(0),
        sim_cpu,
        machine_busy_cores,
        finished,
        command,
    })
}

/// The `pipeline_finished` event of a JSON log.
fn finished_event(log: &Path) -> Result<Value> {
    let text = fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    text.lines()
        .rev()
        .filter(|l| l.contains("pipeline_finished"))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .with_context(|| format!("no pipeline_finished event in {}", log.display()))
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

fn find_psql() -> Result<PathBuf> {
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("psql");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin").join("psql"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .context("psql not found; install it with: apt-get install -y postgresql-client")
}

fn db_url(env: &Env, db: &str) -> String {
    match env.admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => env.admin_url.clone(),
    }
}

fn psql(env: &Env, db: &str, sql: &str) -> Result<String> {
    let out = Command::new(&env.psql)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(db_url(env, db))
        .arg("-c")
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!(
            "psql failed on {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn create_database(env: &Env, db: &str) -> Result<()> {
    drop_database(env, db)?;
    psql(env, "postgres", &format!("CREATE DATABASE {db}"))?;
    Ok(())
}

fn drop_database(env: &Env, db: &str) -> Result<()> {
    psql(
        env,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )?;
    Ok(())
}

fn table_rows(env: &Env, db: &str, table: &str) -> Result<u64> {
    let s = psql(env, db, &format!("SELECT count(*) FROM {table}"))?;
    s.parse()
        .with_context(|| format!("count of {table}: {s:?}"))
}

fn relation_size(env: &Env, db: &str, table: &str) -> Result<u64> {
    let s = psql(
        env,
        db,
        &format!("SELECT pg_total_relation_size('{table}')"),
    )?;
    s.parse().with_context(|| format!("size of {table}: {s:?}"))
}

/// (inserted, updated incl. HOT) tuples of a table since the statistics began.
fn tuple_counters(env: &Env, db: &str, table: &str) -> Result<(i64, i64)> {
    let s = psql(
        env,
        db,
        &format!(
            "SELECT n_tup_ins || ' ' || n_tup_upd FROM pg_stat_user_tables WHERE relid = '{table}'::regclass"
        ),
    )?;
    let mut it = s.split_whitespace().map(str::parse::<i64>);
    match (it.next(), it.next()) {
        (Some(Ok(i)), Some(Ok(u))) => Ok((i, u)),
        _ => bail!("pg_stat_user_tables for {table}: {s:?}"),
    }
}

fn wal_lsn(env: &Env, db: &str) -> Result<String> {
    psql(env, db, "SELECT pg_current_wal_lsn()")
}

fn wal_lsn_diff(env: &Env, db: &str, since: &str) -> Result<i64> {
    let s = psql(
        env,
        db,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{since}')::int8"),
    )?;
    s.parse().with_context(|| format!("WAL difference {s:?}"))
}

// ---------------------------------------------------------------------------------------------
// The machine
// ---------------------------------------------------------------------------------------------

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (busy, total) jiffies of the whole machine.
fn machine_cpu() -> Option<(u64, u64)> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// User + system CPU seconds of a live process.
fn proc_cpu_secs(pid: u32, clk_tck: f64) -> Option<f64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clk_tck)
}

fn machine_info(env: &Env) -> Value {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "?".to_owned(), |(_, v)| v.trim().to_owned());
    let pg_version = psql(env, "postgres", "SHOW server_version").unwrap_or_else(|_| "?".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({
        "cores": cores(),
        "cpu": cpu,
        "memory_gib": mem_kb / 1024.0 / 1024.0,
        "kernel": kernel,
        "postgres": pg_version,
        "load_at_start": loadavg(),
        "quick": env.opts.quick,
        "sizes": {
            "ingest": env.sizes.ingest,
            "api": env.sizes.api,
            "sparse": env.sizes.sparse,
            "scale": env.sizes.scale,
        },
        "concurrency": env.opts.concurrency,
        "date_utc": utc_now(),
    })
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

fn print_outcome(s: Scenario, o: &Outcome) {
    println!("{}:", s.name());
    for f in &o.figures {
        println!("  {:<22} {:>14} {}", f.key, fmt_value(f.value), f.unit);
    }
    for t in &o.targets {
        println!(
            "  target: {} — {}",
            t.what,
            if t.met { "met" } else { "MISSED" }
        );
    }
    for n in &o.notes {
        println!("  note: {n}");
    }
    println!("  reproduce: cargo xtask bench {}", s.name());
    for c in &o.commands {
        println!("    {c}");
    }
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if (v.fract() == 0.0 && v.abs() < 1e15) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn markdown_table(env: &Env, machine: &Value, results: &[(Scenario, Result<Outcome>)]) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Machine: {} core(s) ({}), {:.1} GiB, PostgreSQL {}, load {} at start / {} at end{}; {}",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["postgres"].as_str().unwrap_or("?"),
        machine["load_at_start"].as_str().unwrap_or("?"),
        machine["load_at_end"].as_str().unwrap_or("?"),
        if env.opts.quick {
            " — QUICK mode"
        } else {
            ""
        },
        machine["date_utc"].as_str().unwrap_or("")
    );
    let _ = writeln!(t);
    let _ = writeln!(t, "| scenario | target | met |");
    let _ = writeln!(t, "|---|---|---|");
    for (s, r) in results {
        match r {
            Err(e) => {
                let _ = writeln!(t, "| {} | FAILED: {e:#} | |", s.name());
            }
            Ok(o) => {
                for tg in &o.targets {
                    let met = if tg.met { "yes" } else { "**no**" };
                    let _ = writeln!(t, "| {} | {} | {met} |", s.name(), tg.what);
                }
            }
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "| scenario | figure | value |");
    let _ = writeln!(t, "|---|---|---|");
    for (s, r) in results {
        if let Ok(o) = r {
            for (i, f) in o.figures.iter().enumerate() {
                let _ = writeln!(
                    t,
                    "| {} | {} | {} {} |",
                    if i == 0 { s.name() } else { "" },
                    f.key,
                    fmt_value(f.value),
                    f.unit
                );
            }
        }
    }
    let _ = writeln!(t);
    for (s, r) in results {
        if let Ok(o) = r {
            let _ = writeln!(t, "`{}`: `cargo xtask bench {}`", s.name(), s.name());
            for c in &o.commands {
                let _ = writeln!(t, "    {c}");
            }
            for n in &o.notes {
                let _ = writeln!(t, "  - {n}");
            }
        }
    }
    t
}

fn results_json(env: &Env, machine: &Value, results: &[(Scenario, Result<Outcome>)]) -> Value {
    let scenarios: Vec<Value> = results
        .iter()
        .map(|(s, r)| match r {
            Err(e) => json!({ "scenario": s.name(), "error": format!("{e:#}") }),
            Ok(o) => json!({
                "scenario": s.name(),
                "reproduce": format!("cargo xtask bench {}{}", s.name(), if env.opts.quick { " --quick" } else { "" }),
                "figures": o.figures.iter().map(|f| json!({
                    "key": f.key,
                    "value": if f.value.is_finite() { json!(f.value) } else { Value::Null },
                    "unit": f.unit,
                })).collect::<Vec<_>>(),
                "targets": o.targets.iter().map(|t| json!({ "what": t.what, "met": t.met })).collect::<Vec<_>>(),
                "commands": o.commands,
                "notes": o.notes,
            }),
        })
        .collect();
    json!({ "machine": machine, "scenarios": scenarios })
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn rel(env: &Env, p: &Path) -> String {
    p.strip_prefix(&env.root)
        .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
}

fn stat_u64(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn stat_f64(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(f64::NAN)
}

/// How many query requests the simulator logged, and seconds from the first to the last.
/// The query requests of the simulator's log and the seconds from the first one's arrival to
/// the last response (arrival plus `elapsed_us`).
fn query_phase(log: &Value) -> Option<(u64, f64)> {
    let spans: Vec<(f64, f64)> = log
        .as_array()?
        .iter()
        .filter(|r| r["endpoint"] == "query")
        .filter_map(|r| {
            let at = r["at"].as_str().and_then(rfc3339_secs)?;
            let elapsed = r["elapsed_us"].as_u64().unwrap_or(0) as f64 / 1e6;
            Some((at, at + elapsed))
        })
        .collect();
    let first = spans.iter().map(|s| s.0).reduce(f64::min)?;
    let last = spans.iter().map(|s| s.1).reduce(f64::max)?;
    Some((spans.len() as u64, last - first))
}

/// Seconds since the Unix epoch of a UTC RFC 3339 timestamp (`2026-01-31T23:59:59.123456Z`).
fn rfc3339_secs(s: &str) -> Option<f64> {
    let s = s.strip_suffix('Z')?;
    let (date, clock) = s.split_once('T')?;
    let mut d = date.split('-').map(str::parse::<i64>);
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut c = clock.split(':');
    let (h, min) = (
        c.next()?.parse::<f64>().ok()?,
        c.next()?.parse::<f64>().ok()?,
    );
    let sec: f64 = c.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3600.0 + min * 60.0 + sec)
}

/// All responses of one simulator endpoint (`query`, `token`, ...).
fn endpoint_total(stats: &Value, endpoint: &str) -> u64 {
    stats["by_endpoint"][endpoint]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_in_documented_order() {
        let o = parse_args(&["scale", "ingest", "--quick", "--concurrency", "8"]).unwrap();
        assert_eq!(o.scenarios, vec![Scenario::Ingest, Scenario::Scale]);
        assert!(o.quick);
        assert_eq!(o.concurrency, Some(8));
        let all = parse_args(&[]).unwrap();
        assert_eq!(all.scenarios, Scenario::ALL.to_vec());
        assert!(parse_args(&["nope"]).is_err());
        assert!(parse_args(&["--concurrency", "0"]).is_err());
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(dechunk("4\r\nab\"}\r\n0\r\n\r\n").unwrap(), "ab\"}");
        assert_eq!(dechunk("2\r\n{}\r\n1\r\n \r\n0\r\n\r\n").unwrap(), "{} ");
    }

    #[test]
    fn endpoint_totals_sum_statuses() {
        let v = json!({"by_endpoint": {"query": {"200": 7, "429": 2}, "token": {"200": 1}}});
        assert_eq!(endpoint_total(&v, "query"), 9);
        assert_eq!(endpoint_total(&v, "cdc"), 0);
    }

    #[test]
    fn timestamps_and_spans() {
        assert_eq!(rfc3339_secs("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(rfc3339_secs("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
        assert_eq!(rfc3339_secs("2024-02-29T12:00:00+01:00"), None);
        let log = json!([
            {"endpoint": "token", "at": "2026-01-01T00:00:00Z"},
            {"endpoint": "query", "at": "2026-01-01T00:00:01Z"},
            {"endpoint": "query", "at": "2026-01-01T00:00:03.5Z", "elapsed_us": 250_000},
        ]);
        assert_eq!(query_phase(&log), Some((2, 2.75)));
        assert_eq!(query_phase(&json!([])), None);
    }

    #[test]
    fn values_format_compactly() {
        assert_eq!(fmt_value(200_000.0), "200000");
        assert_eq!(fmt_value(12.345), "12.3");
        assert_eq!(fmt_value(1.234), "1.23");
        assert_eq!(fmt_value(f64::NAN), "n/a");
    }
}
