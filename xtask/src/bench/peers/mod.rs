//! `cargo xtask bench peers`: the established QuickBooks connectors side by side with ours
//! (issue 19), on one `qbo-sim` company and a fresh database per run.
//!
//! Each peer lives in a Python venv under `target/peers/<name>-venv`, installed from the
//! pinned `xtask/peers/requirements/<name>.txt` (a `pip freeze` of a working install) and
//! reused while its marker file matches that list. The bench writes each peer's
//! configuration (token URL, base URL, the simulator's client id, secret, refresh token and
//! realm), runs ours and every peer in turn, round after round, with QBO's limits off and on,
//! and compares wall time, peak RSS, requests and rows against the simulator's truth.
//!
//! Two peers (Airbyte's source and Singer's tap) hard-code Intuit's hosts and have no setting
//! for another base. They run unmodified behind `xtask/peers/intuit_proxy.py`: `HTTPS_PROXY`
//! sends their `CONNECT`s to it, it ends TLS for the Intuit hosts with a certificate of a
//! throwaway CA made here (`target/peers/tls/`), and relays plain HTTP to the simulator. The
//! CA is trusted through `REQUESTS_CA_BUNDLE` and, because airbyte-cdk sends through
//! `Session.send` (which ignores that variable), also appended to the certifi bundle of the
//! two peers' own venvs — their trust store, as a corporate proxy's CA is installed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use super::db::{create_database, drop_database, find_psql, psql};
use super::machine::{clock_ticks, loadavg, machine_info};
use super::sim::Sim;
use super::{Env, Options, Sizes, strings};
use crate::pg;

mod commands;
mod setup;
mod table;

use commands::prepare;
use setup::{Proxy, Tls, ensure_tls, ensure_venv, find_python};
use table::{api_requests, mode_table};

pub(crate) const USAGE: &str = "\
usage: cargo xtask bench peers [--runs N] [--only NAME,...] [--limits off|on|both] [--keep]

Runs ours (qb-backfill, Customer then Invoice) and the established connectors on one qbo-sim
company (50k invoices, 20k customers of which 1,576 inactive), a fresh database per run, QBO's
limits off then on, the contenders alternating round by round; prints wall (median, min, max),
peak RSS, requests, rows against the simulator's truth and the ratio to ours.

peers (venvs under target/peers/, pinned in xtask/peers/requirements/):
  pyqb     python-quickbooks 0.9.12 + our plain COPY loader (xtask/peers/pyqb_copy.py)
  dlt      dlt 1.31.0, rest_api source, postgres destination (xtask/peers/dlt_rest_api.py)
  airbyte  airbyte-source-quickbooks 4.0.4 through PyAirbyte 0.71.3 into a PostgresCache
  singer   tap-quickbooks 2.5.0 | pipelinewise-target-postgres 2.1.2

options:
  --runs N        rounds per limits setting (default 2)
  --only LIST     a subset of ours,pyqb,dlt,airbyte,singer (ours is always run: the ratios need it)
  --limits MODE   off, on or both (default both)
  --keep          keep the qb_peers_* databases
Not part of `cargo xtask test` or CI: it installs Python packages from PyPI on first use.
";

/// The realm's data: `qbo-sim --customers 20000 --inactive-customers 1576 --invoices 50000`
/// over two years.
const CUSTOMERS: u64 = 20_000;
/// Inactive customers, as in the company of issue 19 (QBO hides them unless a query filters
/// `Active`).
const INACTIVE: u64 = 1_576;
const INVOICES: u64 = 50_000;
const SPAN: (&str, &str) = ("2023-01-01", "2025-01-01");
/// The peers that window on LastUpdatedTime start a month before the data.
const PEER_START: &str = "2022-12-01T00:00:00Z";

/// A venv of a peer: its directory name and pinned requirements file.
const VENVS: [&str; 6] = [
    "pyqb",
    "dlt",
    "airbyte",
    "airbyte-source",
    "singer-tap",
    "singer-target",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Contender {
    Ours,
    Pyqb,
    Dlt,
    Airbyte,
    Singer,
}

impl Contender {
    const ALL: [Contender; 5] = [
        Contender::Ours,
        Contender::Pyqb,
        Contender::Dlt,
        Contender::Airbyte,
        Contender::Singer,
    ];

    fn name(self) -> &'static str {
        match self {
            Contender::Ours => "ours",
            Contender::Pyqb => "pyqb",
            Contender::Dlt => "dlt",
            Contender::Airbyte => "airbyte",
            Contender::Singer => "singer",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Contender::Ours => "qb-backfill (ours)",
            Contender::Pyqb => "python-quickbooks + COPY",
            Contender::Dlt => "dlt rest_api",
            Contender::Airbyte => "Airbyte (PyAirbyte)",
            Contender::Singer => "Singer tap → target-postgres",
        }
    }

    fn venvs(self) -> &'static [&'static str] {
        match self {
            Contender::Ours => &[],
            Contender::Pyqb => &["pyqb"],
            Contender::Dlt => &["dlt"],
            Contender::Airbyte => &["airbyte", "airbyte-source"],
            Contender::Singer => &["singer-tap", "singer-target"],
        }
    }

    /// Tables holding (customers, invoices) after a run.
    fn tables(self) -> (&'static str, &'static str) {
        match self {
            Contender::Ours => ("raw.qb_customers", "raw.qb_invoices"),
            Contender::Pyqb => ("pyqb.customer", "pyqb.invoice"),
            Contender::Dlt => ("dlt_qbo.customer", "dlt_qbo.invoice"),
            Contender::Airbyte => ("airbyte.customers", "airbyte.invoices"),
            Contender::Singer => ("singer.customers", "singer.invoices"),
        }
    }

    /// Why this contender needs the TLS proxy in front of the simulator, if it does.
    fn proxied(self) -> Option<&'static str> {
        match self {
            Contender::Airbyte => Some(
                "airbyte-source-quickbooks 4.0.4 fixes url_base (https://quickbooks.api.intuit.com, or sandbox-) and token_refresh_endpoint (https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer) in its manifest.yaml; its spec has no setting for either",
            ),
            Contender::Singer => Some(
                "tap-quickbooks 2.5.0 fixes PROD_ENDPOINT_BASE, SANDBOX_ENDPOINT_BASE and TOKEN_REFRESH_URL in tap_quickbooks/client.py; no config key or environment variable changes them",
            ),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct PeerOpts {
    runs: usize,
    only: Vec<Contender>,
    limits: Vec<bool>,
    keep: bool,
}

fn parse_peer_args(args: &[&str]) -> Result<PeerOpts> {
    let mut o = PeerOpts {
        runs: 2,
        only: Contender::ALL.to_vec(),
        limits: vec![false, true],
        keep: false,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--keep" => o.keep = true,
            "--runs" => {
                let v = it.next().context("--runs needs a value")?;
                o.runs = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--runs {v:?} is not a positive integer"))?;
            }
            "--only" => {
                let v = it.next().context("--only needs a list")?;
                let mut only = vec![Contender::Ours];
                for name in v.split(',').filter(|s| !s.is_empty()) {
                    let c = Contender::ALL
                        .into_iter()
                        .find(|c| c.name() == name)
                        .with_context(|| format!("unknown peer `{name}`\n{USAGE}"))?;
                    if !only.contains(&c) {
                        only.push(c);
                    }
                }
                only.sort();
                o.only = only;
            }
            "--limits" => {
                o.limits = match it.next().copied() {
                    Some("off") => vec![false],
                    Some("on") => vec![true],
                    Some("both") => vec![false, true],
                    other => bail!("--limits takes off, on or both, not {other:?}"),
                };
            }
            other => bail!("unknown bench peers argument `{other}`\n{USAGE}"),
        }
    }
    Ok(o)
}

/// `cargo xtask bench peers ...`.
pub(crate) fn bench_peers(root: &Path, args: &[&str]) -> Result<ExitCode> {
    if args.iter().any(|a| matches!(*a, "-h" | "--help" | "help")) {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let popts = parse_peer_args(args)?;
    let time_bin = PathBuf::from("/usr/bin/time");
    if !time_bin.is_file() {
        bail!("/usr/bin/time (GNU time) measures wall and peak RSS; apt-get install -y time");
    }
    let psql_bin = find_psql()?;
    eprintln!("xtask bench peers: building the release binaries (qbo-sim, qb-backfill)");
    let (target_dir, release, out_dir) = super::release_build(root, "bin-backfill")?;
    let peers_dir = target_dir.join("peers");
    fs::create_dir_all(&peers_dir).with_context(|| format!("creating {}", peers_dir.display()))?;

    let python = find_python()?;
    let mut venvs: Vec<&str> = popts.only.iter().flat_map(|c| c.venvs()).copied().collect();
    venvs.sort_unstable();
    venvs.dedup();
    for v in VENVS.iter().filter(|v| venvs.contains(v)) {
        ensure_venv(root, &peers_dir, &python, v)?;
    }
    let tls = if popts.only.iter().any(|c| c.proxied().is_some()) {
        Some(ensure_tls(&peers_dir, &venvs)?)
    } else {
        None
    };

    let cluster = pg::Cluster::locate(root)?;
    let was_running = cluster.is_running()?;
    let admin_url = cluster.start()?;
    eprintln!("xtask bench peers: PostgreSQL at {admin_url}");
    let env = Env {
        root: root.to_path_buf(),
        out_dir,
        sim_bin: release.join("qbo-sim"),
        pipeline_bin: release.join("qb-backfill"),
        psql: psql_bin,
        time_bin,
        admin_url,
        clk_tck: clock_ticks(),
        opts: Options {
            scenarios: Vec::new(),
            quick: false,
            concurrency: None,
            memory_budget: None,
            keep: popts.keep,
            batch: false,
            api_invoices: None,
        },
        sizes: Sizes::new(false),
    };
    let ctx = Ctx {
        env: &env,
        peers_dir,
        python,
        tls,
    };
    let result = run_peers(&ctx, &popts);
    if !was_running && let Err(e) = cluster.stop() {
        eprintln!("xtask bench peers: stopping the throwaway cluster failed: {e:#}");
    }
    result
}

struct Ctx<'a> {
    env: &'a Env,
    peers_dir: PathBuf,
    python: PathBuf,
    tls: Option<Tls>,
}

/// One measured run of a contender.
#[derive(Debug, Clone)]
struct Measured {
    wall: f64,
    rss_mb: f64,
    requests: u64,
    throttled: u64,
    customers: Option<u64>,
    invoices: Option<u64>,
}

/// The truth of the simulator's company.
#[derive(Debug, Clone, Copy)]
struct Truth {
    customers: u64,
    inactive: u64,
    invoices: u64,
}

fn run_peers(ctx: &Ctx<'_>, o: &PeerOpts) -> Result<ExitCode> {
    let env = ctx.env;
    let machine = machine_info(env);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "Machine: {} core(s) ({}), {:.1} GiB, PostgreSQL {}, load {} at start; {}",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_gib"].as_f64().unwrap_or(0.0),
        machine["postgres"].as_str().unwrap_or("?"),
        machine["load_at_start"].as_str().unwrap_or("?"),
        machine["date_utc"].as_str().unwrap_or("")
    );
    let mut all_ok = true;
    let mut json_modes = Vec::new();
    for &limits in &o.limits {
        let mode = if limits { "on" } else { "off" };
        eprintln!("\n== peers, QBO limits {mode} ==");
        let sim_args = sim_args(limits);
        let sim = Sim::start(env, &format!("peers-{mode}"), &sim_args)?;
        let truth = truth(&sim)?;
        eprintln!(
            "peers: truth {} customers ({} inactive), {} invoices",
            truth.customers, truth.inactive, truth.invoices
        );
        let proxy = match &ctx.tls {
            Some(t) => Some(Proxy::start(ctx, &sim, t, mode)?),
            None => None,
        };
        let mut runs: BTreeMap<Contender, Vec<Result<Measured>>> = BTreeMap::new();
        let mut commands: BTreeMap<Contender, String> = BTreeMap::new();
        for round in 0..o.runs {
            for &c in &o.only {
                let label = format!("peers-{mode}-{}-{}", c.name(), round + 1);
                let r = run_one(ctx, &sim, proxy.as_ref(), c, limits, &label);
                match &r {
                    Ok((m, cmd)) => {
                        eprintln!(
                            "{label}: {:.1} s, {:.0} MB, {} requests ({} throttled), customers {}, invoices {}",
                            m.wall,
                            m.rss_mb,
                            m.requests,
                            m.throttled,
                            opt(m.customers),
                            opt(m.invoices)
                        );
                        commands.entry(c).or_insert_with(|| cmd.clone());
                    }
                    Err(e) => {
                        all_ok = false;
                        eprintln!("{label}: FAILED: {e:#}");
                    }
                }
                runs.entry(c).or_default().push(r.map(|(m, _)| m));
            }
        }
        drop(proxy);
        let sim_cmd = sim.command(env);
        drop(sim);
        let table = mode_table(limits, truth, &runs, o.runs);
        println!("\n{table}");
        report.push('\n');
        report.push_str(&table);
        let _ = writeln!(report, "\n    {sim_cmd}");
        for (c, cmd) in &commands {
            let _ = writeln!(report, "    {}: {cmd}", c.name());
        }
        json_modes.push(json!({
            "limits": limits,
            "truth": {"customers": truth.customers, "inactive": truth.inactive, "invoices": truth.invoices},
            "runs": runs.iter().map(|(c, rs)| json!({
                "contender": c.name(),
                "runs": rs.iter().map(|r| match r {
                    Ok(m) => json!({"wall_s": m.wall, "peak_rss_mb": m.rss_mb, "requests": m.requests,
                        "throttled": m.throttled, "customers": m.customers, "invoices": m.invoices}),
                    Err(e) => json!({"error": format!("{e:#}")}),
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }));
    }
    let _ = writeln!(report, "\nload at end: {}", loadavg());
    for c in o
        .only
        .iter()
        .filter_map(|c| c.proxied().map(|why| (c, why)))
    {
        let _ = writeln!(
            report,
            "- {} runs behind xtask/peers/intuit_proxy.py: {}",
            c.0.name(),
            c.1
        );
    }
    println!("{}", report.lines().last().unwrap_or(""));
    // One file per limits setting run, so runs of `--limits off` and `--limits on` coexist.
    let stem = match o.limits[..] {
        [false] => "peers-off",
        [true] => "peers-on",
        _ => "peers",
    };
    let md = env.out_dir.join(format!("{stem}.md"));
    fs::write(&md, &report).with_context(|| format!("writing {}", md.display()))?;
    let js = env.out_dir.join(format!("{stem}.json"));
    fs::write(
        &js,
        serde_json::to_string_pretty(&json!({"machine": machine, "modes": json_modes}))?,
    )
    .with_context(|| format!("writing {}", js.display()))?;
    eprintln!(
        "xtask bench peers: wrote {} and {}",
        md.display(),
        js.display()
    );
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn sim_args(limits: bool) -> Vec<String> {
    let mut a = strings(&[
        "--customers",
        &CUSTOMERS.to_string(),
        "--inactive-customers",
        &INACTIVE.to_string(),
        "--invoices",
        &INVOICES.to_string(),
        "--start",
        SPAN.0,
        "--end",
        SPAN.1,
        "--latency-ms",
        "0",
        // Every contender is handed the same refresh token; rotation is not what is measured.
        "--rotation",
        "never",
    ]);
    if !limits {
        a.extend(strings(&[
            "--requests-per-min",
            "0",
            "--max-concurrency",
            "0",
            "--batch-per-min",
            "0",
        ]));
    }
    a
}

fn truth(sim: &Sim) -> Result<Truth> {
    let customers = sim.http("GET", "/__sim/truth/Customer")?;
    let list = customers
        .as_array()
        .context("/__sim/truth/Customer is not a list")?;
    let inactive = list.iter().filter(|r| r["active"] == false).count() as u64;
    let invoices = sim.http("GET", "/__sim/truth/Invoice")?;
    let invoices = invoices
        .as_array()
        .context("/__sim/truth/Invoice is not a list")?
        .len() as u64;
    Ok(Truth {
        customers: list.len() as u64,
        inactive,
        invoices,
    })
}

fn sim_var<'a>(sim: &'a Sim, key: &str) -> Result<&'a str> {
    sim.env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .with_context(|| format!("qbo-sim printed no {key}"))
}

fn run_one(
    ctx: &Ctx<'_>,
    sim: &Sim,
    proxy: Option<&Proxy>,
    c: Contender,
    limits: bool,
    label: &str,
) -> Result<(Measured, String)> {
    let env = ctx.env;
    let db = format!(
        "qb_peers_{}_{}",
        if limits { "on" } else { "off" },
        c.name()
    );
    create_database(env, &db)?;
    let work = ctx.peers_dir.join("work").join(label);
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("clearing {}", work.display()))?;
    }
    fs::create_dir_all(&work)?;
    let (script, vars) = prepare(ctx, sim, proxy, c, limits, &db, &work)?;
    let script_path = work.join("run.sh");
    fs::write(&script_path, &script)?;
    sim.post("/__sim/stats/reset")?;
    let logs = env.out_dir.join("logs");
    let log_path = logs.join(format!("{label}.log"));
    let time_path = logs.join(format!("time-{label}.txt"));
    let log = fs::File::create(&log_path)?;
    let mut cmd = Command::new(&env.time_bin);
    cmd.arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(&time_path)
        .arg("bash")
        .arg(&script_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir(&env.root);
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    eprintln!("{label}: bash {}", super::rel(env, &script_path));
    let t = Instant::now();
    let status = cmd.status().context("running the contender")?;
    let wall = t.elapsed().as_secs_f64();
    let stats = sim.stats()?;
    if !status.success() {
        bail!(
            "exited with {status} after {wall:.1} s; see {}",
            log_path.display()
        );
    }
    let timing = fs::read_to_string(&time_path)?;
    let rss_kb: f64 = timing
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let requests = api_requests(&stats);
    let throttled = stats["throttled"].as_u64().unwrap_or(0);
    let (ct, it) = c.tables();
    let count = |t: &str| -> Option<u64> {
        psql(env, &db, &format!("SELECT count(*) FROM {t}"))
            .ok()
            .and_then(|s| s.parse().ok())
    };
    let m = Measured {
        wall,
        rss_mb: rss_kb / 1024.0,
        requests,
        throttled,
        customers: count(ct),
        invoices: count(it),
    };
    if !env.opts.keep {
        drop_database(env, &db)?;
    }
    Ok((m, format!("bash {}", super::rel(env, &script_path))))
}

#[cfg(test)]
mod tests {
    use super::commands::url_parts;
    use super::table::median;
    use super::*;

    #[test]
    fn peer_args_parse() {
        let o = parse_peer_args(&["--runs", "3", "--only", "dlt,pyqb", "--limits", "on"]).unwrap();
        assert_eq!(o.runs, 3);
        assert_eq!(
            o.only,
            vec![Contender::Ours, Contender::Pyqb, Contender::Dlt]
        );
        assert_eq!(o.limits, vec![true]);
        let d = parse_peer_args(&[]).unwrap();
        assert_eq!(d.only, Contender::ALL.to_vec());
        assert_eq!(d.limits, vec![false, true]);
        assert!(parse_peer_args(&["--only", "fivetran"]).is_err());
        assert!(parse_peer_args(&["--runs", "0"]).is_err());
        assert!(parse_peer_args(&["--limits", "sometimes"]).is_err());
    }

    #[test]
    fn urls_split() {
        let (u, p, h, port, db) = url_parts("postgres://postgres@127.0.0.1:5544/qb_x").unwrap();
        assert_eq!(
            (u.as_str(), p, h.as_str(), port, db.as_str()),
            ("postgres", None, "127.0.0.1", 5544, "qb_x")
        );
        let (_, p, _, port, db) = url_parts("postgresql://a:b@h/d?sslmode=disable").unwrap();
        assert_eq!((p.as_deref(), port, db.as_str()), (Some("b"), 5432, "d"));
    }

    #[test]
    fn medians_and_requests() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0]), 2.5);
        assert!(median(&mut []).is_nan());
        let stats = json!({"by_endpoint": {"control": {"204": 3}, "discovery": {"200": 1},
            "query": {"200": 7, "429": 2}, "token": {"200": 1}, "batch": {"200": 4}}});
        assert_eq!(api_requests(&stats), 14);
    }
}
