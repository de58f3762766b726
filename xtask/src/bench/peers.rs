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
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::db::{create_database, db_url, drop_database, find_psql, psql};
use super::machine::{clock_ticks, loadavg, machine_info};
use super::sim::Sim;
use super::{Env, Options, Sizes, strings};
use crate::pg;

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
            Contender::Singer => "Singer tap | target-postgres",
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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "qbo-sim",
            "-p",
            "bin-backfill",
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
    let peers_dir = target_dir.join("peers");
    fs::create_dir_all(out_dir.join("logs"))
        .with_context(|| format!("creating {}", out_dir.display()))?;
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
            keep: popts.keep,
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

struct Tls {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
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

/// The contender's command as a bash script, its environment, and the files it needs.
fn prepare(
    ctx: &Ctx<'_>,
    sim: &Sim,
    proxy: Option<&Proxy>,
    c: Contender,
    limits: bool,
    db: &str,
    work: &Path,
) -> Result<(String, Vec<(String, String)>)> {
    let env = ctx.env;
    let url = db_url(env, db);
    let script_dir = env.root.join("xtask").join("peers");
    let venv_py = |v: &str| ctx.peers_dir.join(format!("{v}-venv")).join("bin");
    let mut vars: Vec<(String, String)> = sim.env.clone();
    vars.push(("DATABASE_URL".into(), url.clone()));
    let proxied = |vars: &mut Vec<(String, String)>| -> Result<()> {
        let p = proxy.context("the TLS proxy is not running")?;
        let tls = ctx.tls.as_ref().context("no TLS material")?;
        let ca = tls.ca.display().to_string();
        vars.push(("HTTPS_PROXY".into(), format!("http://127.0.0.1:{}", p.port)));
        vars.push(("NO_PROXY".into(), "127.0.0.1,localhost".into()));
        vars.push(("REQUESTS_CA_BUNDLE".into(), ca.clone()));
        vars.push(("SSL_CERT_FILE".into(), ca));
        Ok(())
    };
    let script = match c {
        Contender::Ours => {
            let bin = env.pipeline_bin.display();
            let mut flags = format!("--start {} --end {} --log-format json", SPAN.0, SPAN.1);
            if !limits {
                flags.push_str(" --requests-per-min 6000000 --max-in-flight 1000");
            }
            format!(
                "set -e\n{bin} --entity Customer {flags} --trigger peers-customers\n{bin} --entity Invoice {flags} --trigger peers-invoices\n"
            )
        }
        Contender::Pyqb => {
            let base = sim_var(sim, "QBO_BASE_URL")?;
            vars.push((
                "QBO_DISCOVERY_URL".into(),
                format!("{base}/.well-known/openid_configuration"),
            ));
            // requests-oauthlib refuses plain http unless told; the simulator is loopback.
            vars.push(("OAUTHLIB_INSECURE_TRANSPORT".into(), "1".into()));
            format!(
                "exec {} {}\n",
                venv_py("pyqb").join("python").display(),
                script_dir.join("pyqb_copy.py").display()
            )
        }
        Contender::Dlt => {
            vars.push((
                "DLT_PIPELINES_DIR".into(),
                work.join("dlt").display().to_string(),
            ));
            vars.push(("RUNTIME__DLTHUB_TELEMETRY".into(), "false".into()));
            format!(
                "exec {} {}\n",
                venv_py("dlt").join("python").display(),
                script_dir.join("dlt_rest_api.py").display()
            )
        }
        Contender::Airbyte => {
            proxied(&mut vars)?;
            vars.push(("AIRBYTE_OFFLINE_MODE".into(), "1".into()));
            vars.push(("DO_NOT_TRACK".into(), "1".into()));
            vars.push(("PEERS_START_DATE".into(), PEER_START.into()));
            vars.push((
                "AIRBYTE_SOURCE_EXE".into(),
                venv_py("airbyte-source")
                    .join("source-quickbooks")
                    .display()
                    .to_string(),
            ));
            format!(
                "cd {}\nexec {} {}\n",
                work.display(),
                venv_py("airbyte").join("python").display(),
                script_dir.join("airbyte_read.py").display()
            )
        }
        Contender::Singer => {
            proxied(&mut vars)?;
            let tap_cfg = work.join("tap-config.json");
            let cfg = json!({
                "client_id": sim_var(sim, "QBO_CLIENT_ID")?,
                "client_secret": sim_var(sim, "QBO_CLIENT_SECRET")?,
                "refresh_token": sim_var(sim, "QBO_REFRESH_TOKEN")?,
                "realm_id": sim_var(sim, "QBO_REALM_ID")?,
                "start_date": PEER_START,
                "user_agent": "qb-backfill bench peers",
                "sandbox": false,
            });
            fs::write(&tap_cfg, serde_json::to_string_pretty(&cfg)?)?;
            let (user, password, host, port, dbname) = url_parts(&url)?;
            let target_cfg = work.join("target-config.json");
            fs::write(
                &target_cfg,
                serde_json::to_string_pretty(&json!({
                    "host": host, "port": port, "user": user,
                    // pipelinewise-target-postgres requires one; a trust cluster ignores it.
                    "password": password.unwrap_or_else(|| "unused".into()),
                    "dbname": dbname, "default_target_schema": "singer",
                }))?,
            )?;
            let tap = venv_py("singer-tap").join("tap-quickbooks");
            let target = venv_py("singer-target").join("target-postgres");
            let catalog = work.join("catalog.json");
            // Discovery (its CompanyInfo read included) is part of the measured run: a first
            // sync does it too. Then only customers and invoices are selected.
            format!(
                "set -eo pipefail\ncd {w}\n{tap} --config {tc} --discover > {w}/discovered.json\n{py} {sel} {w}/discovered.json customers,invoices > {cat}\n{tap} --config {tc} --catalog {cat} | {target} --config {gc} > {w}/state.json\n",
                w = work.display(),
                tap = tap.display(),
                tc = tap_cfg.display(),
                py = ctx.python.display(),
                sel = script_dir.join("singer_select.py").display(),
                cat = catalog.display(),
                target = target.display(),
                gc = target_cfg.display(),
            )
        }
    };
    Ok((script, vars))
}

/// user, password, host, port, database of a `postgres://` URL.
fn url_parts(url: &str) -> Result<(String, Option<String>, String, u16, String)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("not a postgres:// URL")?;
    let (auth, rest) = rest.rsplit_once('@').unwrap_or(("postgres", rest));
    let (user, password) = match auth.split_once(':') {
        Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
        None => (auth.to_owned(), None),
    };
    let (hostport, db) = rest.split_once('/').context("no database in the URL")?;
    let db = db.split('?').next().unwrap_or(db).to_owned();
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().context("port")?),
        None => (hostport.to_owned(), 5432),
    };
    Ok((user, password, host, port, db))
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

/// Requests to the simulator's API (query, batch, read, CDC, token), not its control routes
/// or the discovery document.
fn api_requests(stats: &Value) -> u64 {
    stats["by_endpoint"].as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "control" | "discovery" | "other"))
            .flat_map(|(_, v)| v.as_object().into_iter().flat_map(|s| s.values()))
            .filter_map(Value::as_u64)
            .sum()
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn mode_table(
    limits: bool,
    truth: Truth,
    runs: &BTreeMap<Contender, Vec<Result<Measured>>>,
    rounds: usize,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "QBO limits {} — truth: {} customers ({} inactive), {} invoices; {rounds} round(s)",
        if limits {
            "on (500/min, 10/s, 10 in flight, 40 batch/min)"
        } else {
            "off"
        },
        truth.customers,
        truth.inactive,
        truth.invoices
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| contender | wall median (min–max) | × ours | peak RSS | requests | 429s | customers | invoices |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    let ours = runs
        .get(&Contender::Ours)
        .map(|rs| {
            let mut w: Vec<f64> = rs.iter().flatten().map(|m| m.wall).collect();
            median(&mut w)
        })
        .unwrap_or(f64::NAN);
    for (c, rs) in runs {
        let ok: Vec<&Measured> = rs.iter().flatten().collect();
        let failed = rs.len() - ok.len();
        if ok.is_empty() {
            let why = rs
                .iter()
                .find_map(|r| r.as_ref().err())
                .map(|e| format!("{e:#}"))
                .unwrap_or_default();
            let _ = writeln!(t, "| {} | FAILED: {why} | | | | | | |", c.title());
            continue;
        }
        let mut walls: Vec<f64> = ok.iter().map(|m| m.wall).collect();
        let med = median(&mut walls);
        let (lo, hi) = (walls[0], walls[walls.len() - 1]);
        let rss = ok.iter().map(|m| m.rss_mb).fold(f64::NAN, f64::max);
        let mut reqs: Vec<f64> = ok.iter().map(|m| m.requests as f64).collect();
        let throttled = ok.iter().map(|m| m.throttled).max().unwrap_or(0);
        let rows = |get: fn(&Measured) -> Option<u64>, truth: u64| -> String {
            let vals: Vec<Option<u64>> = ok.iter().map(|m| get(m)).collect();
            let first = vals[0];
            let same = vals.iter().all(|v| *v == first);
            let shown = match first {
                Some(n) if n == truth => format!("{n} ✓"),
                Some(n) => format!("**{n}** ({:+})", n as i64 - truth as i64),
                None => "no table".into(),
            };
            if same {
                shown
            } else {
                format!("{shown} (varies)")
            }
        };
        let _ = writeln!(
            t,
            "| {}{} | {med:.1} s ({lo:.1}–{hi:.1}) | {:.1}× | {rss:.0} MB | {:.0} | {throttled} | {} | {} |",
            c.title(),
            if failed > 0 {
                format!(" ({failed} run(s) failed)")
            } else {
                String::new()
            },
            med / ours,
            median(&mut reqs),
            rows(|m| m.customers, truth.customers),
            rows(|m| m.invoices, truth.invoices),
        );
    }
    t
}

// ---------- Python, venvs and the TLS proxy ----------

fn find_python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PEERS_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    // The pins were made with CPython 3.11 (airbyte-cdk 4 and pipelinewise need < 3.12).
    let pyenv = PathBuf::from("/root/.pyenv/versions/3.11.7/bin/python3.11");
    if pyenv.is_file() {
        return Ok(pyenv);
    }
    for name in ["python3.11", "python3"] {
        if let Ok(o) = Command::new(name).arg("--version").output()
            && o.status.success()
        {
            return Ok(PathBuf::from(name));
        }
    }
    bail!("no Python 3.11 found (set PEERS_PYTHON to one)")
}

/// Creates `target/peers/<name>-venv` from the pinned requirements unless it already holds
/// exactly them.
fn ensure_venv(root: &Path, peers_dir: &Path, python: &Path, name: &str) -> Result<()> {
    let reqs = root
        .join("xtask")
        .join("peers")
        .join("requirements")
        .join(format!("{name}.txt"));
    let pinned =
        fs::read_to_string(&reqs).with_context(|| format!("reading {}", reqs.display()))?;
    let venv = peers_dir.join(format!("{name}-venv"));
    let marker = venv.join(".qb-bench-requirements");
    if fs::read_to_string(&marker).is_ok_and(|m| m == pinned) {
        return Ok(());
    }
    eprintln!(
        "xtask bench peers: installing {name} into {} (pinned in {})",
        venv.display(),
        reqs.display()
    );
    let started = Instant::now();
    if !venv.join("bin").join("python").is_file() {
        let st = Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .with_context(|| format!("running {} -m venv", python.display()))?;
        if !st.success() {
            bail!("creating the venv {} failed", venv.display());
        }
    }
    let st = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--disable-pip-version-check", "-q", "-r"])
        .arg(&reqs)
        .status()
        .context("running pip")?;
    if !st.success() {
        bail!("pip install -r {} failed", reqs.display());
    }
    fs::write(&marker, pinned)?;
    eprintln!(
        "xtask bench peers: {name} installed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A throwaway CA and a certificate for the Intuit hosts under `target/peers/tls/`, the CA
/// appended to the certifi bundle of the proxied peers' venvs.
fn ensure_tls(peers_dir: &Path, venvs: &[&str]) -> Result<Tls> {
    let dir = peers_dir.join("tls");
    fs::create_dir_all(&dir)?;
    let tls = Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("intuit.pem"),
        key: dir.join("intuit.key"),
    };
    if !(tls.ca.is_file() && tls.cert.is_file() && tls.key.is_file()) {
        let ca_key = dir.join("ca.key");
        let csr = dir.join("intuit.csr");
        let ext = dir.join("intuit.ext");
        fs::write(
            &ext,
            "subjectAltName=DNS:quickbooks.api.intuit.com,DNS:sandbox-quickbooks.api.intuit.com,DNS:oauth.platform.intuit.com\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )?;
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .context("running openssl (apt-get install -y openssl)")?;
            if !out.status.success() {
                bail!(
                    "openssl {} failed: {}",
                    args.first().unwrap_or(&""),
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Ok(())
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "365",
            "-subj",
            "/CN=qb-backfill bench throwaway CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "intuit.key",
            "-out",
            "intuit.csr",
            "-subj",
            "/CN=quickbooks.api.intuit.com",
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "intuit.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "intuit.pem",
            "-days",
            "365",
            "-extfile",
            "intuit.ext",
        ])?;
        let _ = fs::remove_file(csr);
        let _ = fs::remove_file(ext);
        let _ = ca_key;
    }
    let ca = fs::read_to_string(&tls.ca)?;
    for v in venvs
        .iter()
        .filter(|v| matches!(**v, "airbyte-source" | "singer-tap"))
    {
        let py = peers_dir
            .join(format!("{v}-venv"))
            .join("bin")
            .join("python");
        let out = Command::new(&py)
            .args(["-c", "import certifi; print(certifi.where())"])
            .output()
            .with_context(|| format!("asking {} for certifi's bundle", py.display()))?;
        if !out.status.success() {
            bail!("{v}: certifi is not importable");
        }
        let bundle = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let text = fs::read_to_string(&bundle)?;
        if !text.contains(ca.trim()) {
            let mut t = text;
            if !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str("# qb-backfill bench peers: throwaway CA of xtask/peers/intuit_proxy.py\n");
            t.push_str(&ca);
            fs::write(&bundle, t).with_context(|| format!("writing {}", bundle.display()))?;
        }
    }
    Ok(tls)
}

/// The TLS proxy process (killed when dropped).
struct Proxy {
    child: Child,
    port: u16,
}

impl Proxy {
    fn start(ctx: &Ctx<'_>, sim: &Sim, tls: &Tls, mode: &str) -> Result<Proxy> {
        let base = sim_var(sim, "QBO_BASE_URL")?;
        let addr = base.trim_start_matches("http://").trim_end_matches('/');
        let log = fs::File::create(
            ctx.env
                .out_dir
                .join("logs")
                .join(format!("peers-proxy-{mode}.log")),
        )?;
        let mut child = Command::new(&ctx.python)
            .arg(
                ctx.env
                    .root
                    .join("xtask")
                    .join("peers")
                    .join("intuit_proxy.py"),
            )
            .arg(addr)
            .arg(&tls.cert)
            .arg(&tls.key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting intuit_proxy.py")?;
        let mut out = child.stdout.take().context("proxy stdout")?;
        let mut line = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut byte = [0u8; 1];
        while Instant::now() < deadline {
            match std::io::Read::read(&mut out, &mut byte) {
                Ok(1) if byte[0] == b'\n' => break,
                Ok(1) => line.push(byte[0]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&line);
        let port = text
            .trim()
            .strip_prefix("PORT=")
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => Ok(Proxy { child, port }),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("intuit_proxy.py printed {text:?} instead of PORT=<n>")
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
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
