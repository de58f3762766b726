//! The measured pipeline process: the release `qb-invoices-backfill` under `/usr/bin/time`, its
//! arguments, and the `pipeline_finished` event of its JSON log.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use super::db::db_url;
use super::machine::{cores, machine_cpu};
use super::sim::Sim;
use super::{Env, rel, strings};

/// Pipeline flags that lift the client's own pacing (the simulator has no limits here).
pub(super) fn unlimited_client_flags() -> Vec<String> {
    strings(&["--requests-per-min", "6000000", "--max-in-flight", "1000"])
}

pub(super) fn pipeline_args(
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
    if let Some(b) = &env.opts.memory_budget {
        a.push("--memory-budget".into());
        a.push(b.clone());
    }
    a
}

/// One measured pipeline run.
pub(super) struct Run {
    pub(super) wall: Duration,
    pub(super) user: f64,
    pub(super) sys: f64,
    pub(super) max_rss_kb: u64,
    pub(super) sim_cpu: f64,
    pub(super) machine_busy_cores: f64,
    pub(super) finished: Value,
    pub(super) command: String,
}

pub(super) fn run_pipeline(
    env: &Env,
    sim: &Sim,
    db: &str,
    args: &[String],
    label: &str,
) -> Result<Run> {
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
