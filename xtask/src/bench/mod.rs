//! `cargo xtask bench`: the performance scenarios of issue 7, measured end to end.
//!
//! Every scenario starts the release `qbo-sim` binary, creates a fresh database on the
//! throwaway cluster, runs the release `qb-invoices-backfill` binary under `/usr/bin/time`
//! (wall, CPU and peak RSS of the pipeline process), and reads the simulator's statistics
//! (`/__sim/stats`) and PostgreSQL's (`pg_stat_user_tables`, WAL position). Figures are
//! printed as each scenario ends, then as one table, and written to `target/bench/`
//! (`results.json`, `results.md`). Targets are reported, never asserted: a benchmark that
//! misses one still exits 0 (a scenario that cannot run exits 1).
//!
//! `mod.rs` holds the command line, the run of the chosen scenarios and the small helpers they
//! share; the harness is `sim` (the simulator process), `db` (psql on the throwaway cluster),
//! `pipeline` (the measured pipeline process), `machine` (cores, CPU, load) and `table` (the
//! printed figures, `results.md`, `results.json`); each scenario has its own file (`ingest`,
//! `api`, `sparse`, `rerun`, `scale`, `latency`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::pg;

mod api;
mod db;
mod ingest;
mod latency;
mod machine;
mod peers;
mod pipeline;
mod rerun;
mod scale;
mod sim;
mod sparse;
mod table;

use api::scenario_api;
use db::find_psql;
use ingest::{IngestFixture, scenario_ingest};
use latency::scenario_latency;
use machine::{clock_ticks, loadavg, machine_info};
use rerun::scenario_rerun;
use scale::scenario_scale;
use sparse::scenario_sparse;
use table::{markdown_table, print_outcome, results_json};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [SCENARIO...] [--quick] [--concurrency N] [--memory-budget SIZE] [--keep]
                         [--batch] [--api-invoices N]

scenarios (default: all, in this order):
  ingest   200k invoices over one year, simulator at zero latency and no API limits, into a fresh
           database; rows/s, MB/s, CPU, peak RSS, and the PostgreSQL COPY floor for the same rows
  api      50k invoices over three years, 250 ms +- 50 ms per request, QBO's limits on (500/min,
           10 in flight): achieved requests/min, 429s, wall vs the theoretical minimum
  sparse   three years planned, data in two months: QBO requests used
  rerun    the ingest range again with --force: wall time, rows written, WAL written
  scale    1M invoices over five years: peak RSS (compare with ingest) and rows/s
  latency  100k invoices over six months, QBO's limits on, a full page answered in 0.3, 1, 2
           and 4 s (COUNTs and empty pages fast): wall vs the floor, queries vs pages, metered
           calls, 429s, peak in flight, peak RSS
  peers    alone, never in the default: the established connectors side by side with ours
           (cargo xtask bench peers --help)

options:
  --quick          smaller datasets (ingest 50k, api 10k, scale 250k, latency 20k) for a fast look
  --concurrency N  pass --concurrency N to every pipeline run (default: the pipeline's default)
  --memory-budget SIZE  pass --memory-budget SIZE to every pipeline run (e.g. 32MB)
  --keep           keep the benchmark databases (qb_bench_*) afterwards
  --batch          run the api scenario's pipeline with --batch (batch requests, 40/min): batch
                   requests, items, wall against the single-query and the batch floors
  --api-invoices N the api scenario's invoices (default 50k, 10k with --quick)
";

/// One benchmark scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Ingest,
    Api,
    Sparse,
    Rerun,
    Scale,
    Latency,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::Ingest,
        Scenario::Api,
        Scenario::Sparse,
        Scenario::Rerun,
        Scenario::Scale,
        Scenario::Latency,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Api => "api",
            Scenario::Sparse => "sparse",
            Scenario::Rerun => "rerun",
            Scenario::Scale => "scale",
            Scenario::Latency => "latency",
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
    /// `--memory-budget` passed to every pipeline run, as given (e.g. `32MB`).
    memory_budget: Option<String>,
    keep: bool,
    /// `--batch`: the `api` scenario's pipeline runs with `--batch`.
    batch: bool,
    /// `--api-invoices N`: the `api` scenario's size.
    api_invoices: Option<u64>,
}

/// Builds the release `qbo-sim` and the binaries of `package`; returns the target directory,
/// its `release/` and the benches' output directory (`bench/`, with `logs/` created).
pub(crate) fn release_build(root: &Path, package: &str) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "qbo-sim",
            "-p",
            package,
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
    Ok((target_dir, release, out_dir))
}

fn parse_args(args: &[&str]) -> Result<Options> {
    let mut o = Options {
        scenarios: Vec::new(),
        quick: false,
        concurrency: None,
        memory_budget: None,
        keep: false,
        batch: false,
        api_invoices: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--quick" => o.quick = true,
            "--keep" => o.keep = true,
            "--batch" => o.batch = true,
            "--api-invoices" => {
                let v = it.next().context("--api-invoices needs a value")?;
                let n: u64 =
                    v.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("--api-invoices {v:?} is not a positive integer")
                    })?;
                o.api_invoices = Some(n);
            }
            "--concurrency" => {
                let v = it.next().context("--concurrency needs a value")?;
                let n: u32 =
                    v.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("--concurrency {v:?} is not a positive integer")
                    })?;
                o.concurrency = Some(n);
            }
            "--memory-budget" => {
                let v = it
                    .next()
                    .context("--memory-budget needs a value such as 32MB")?;
                o.memory_budget = Some((*v).to_owned());
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
    latency: u64,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                ingest: 50_000,
                api: 10_000,
                sparse: 20_000,
                scale: 250_000,
                latency: 20_000,
            }
        } else {
            Sizes {
                ingest: 200_000,
                api: 50_000,
                sparse: 20_000,
                scale: 1_000_000,
                latency: 100_000,
            }
        }
    }
}

/// A measured value.
#[derive(Debug, Clone)]
struct Figure {
    key: String,
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
    fn fig(&mut self, key: impl Into<String>, value: f64, unit: &'static str) {
        self.figures.push(Figure {
            key: key.into(),
            value,
            unit,
        });
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
    if args.first() == Some(&"peers") {
        return peers::bench_peers(root, &args[1..]);
    }
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
    let (_, release, out_dir) = release_build(root, "bin-invoices")?;

    let cluster = pg::Cluster::locate(root)?;
    let was_running = cluster.is_running()?;
    let admin_url = cluster.start()?;
    eprintln!("xtask bench: PostgreSQL at {admin_url}");

    let sizes = Sizes::new(opts.quick);
    let env = Env {
        root: root.to_path_buf(),
        out_dir,
        sim_bin: release.join("qbo-sim"),
        pipeline_bin: release.join("qb-invoices-backfill"),
        psql,
        time_bin,
        admin_url,
        clk_tck: clock_ticks(),
        sizes: Sizes {
            api: opts.api_invoices.unwrap_or(sizes.api),
            ..sizes
        },
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
            Scenario::Latency => scenario_latency(env),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse_in_documented_order() {
        let o = parse_args(&["scale", "ingest", "--quick", "--concurrency", "8"]).unwrap();
        assert_eq!(o.scenarios, vec![Scenario::Ingest, Scenario::Scale]);
        assert!(o.quick);
        assert_eq!(o.concurrency, Some(8));
        assert_eq!(o.memory_budget, None);
        let o = parse_args(&["latency", "--memory-budget", "32MB"]).unwrap();
        assert_eq!(o.memory_budget.as_deref(), Some("32MB"));
        assert!(parse_args(&["--memory-budget"]).is_err());
        let all = parse_args(&[]).unwrap();
        assert_eq!(all.scenarios, Scenario::ALL.to_vec());
        assert!(parse_args(&["nope"]).is_err());
        assert!(parse_args(&["--concurrency", "0"]).is_err());
    }
}
