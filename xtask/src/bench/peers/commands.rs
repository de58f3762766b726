//! What each contender runs: its command as a bash script, its environment and the
//! configuration files the bench writes for it.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use super::super::db::db_url;
use super::super::sim::Sim;
use super::setup::Proxy;
use super::{Contender, Ctx, PEER_START, SPAN, sim_var};

/// The contender's command as a bash script, its environment, and the files it needs.
pub(super) fn prepare(
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
pub(super) fn url_parts(url: &str) -> Result<(String, Option<String>, String, u16, String)> {
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
