//! PostgreSQL through `psql` on the throwaway cluster: one database per scenario, row counts,
//! sizes, tuple counters and WAL positions.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use super::Env;

pub(super) fn find_psql() -> Result<PathBuf> {
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

pub(super) fn db_url(env: &Env, db: &str) -> String {
    match env.admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => env.admin_url.clone(),
    }
}

pub(super) fn psql(env: &Env, db: &str, sql: &str) -> Result<String> {
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

pub(super) fn create_database(env: &Env, db: &str) -> Result<()> {
    drop_database(env, db)?;
    psql(env, "postgres", &format!("CREATE DATABASE {db}"))?;
    Ok(())
}

pub(super) fn drop_database(env: &Env, db: &str) -> Result<()> {
    psql(
        env,
        "postgres",
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    )?;
    Ok(())
}

pub(super) fn table_rows(env: &Env, db: &str, table: &str) -> Result<u64> {
    let s = psql(env, db, &format!("SELECT count(*) FROM {table}"))?;
    s.parse()
        .with_context(|| format!("count of {table}: {s:?}"))
}

pub(super) fn relation_size(env: &Env, db: &str, table: &str) -> Result<u64> {
    let s = psql(
        env,
        db,
        &format!("SELECT pg_total_relation_size('{table}')"),
    )?;
    s.parse().with_context(|| format!("size of {table}: {s:?}"))
}

/// (inserted, updated incl. HOT) tuples of a table since the statistics began.
pub(super) fn tuple_counters(env: &Env, db: &str, table: &str) -> Result<(i64, i64)> {
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

pub(super) fn wal_lsn(env: &Env, db: &str) -> Result<String> {
    psql(env, db, "SELECT pg_current_wal_lsn()")
}

pub(super) fn wal_lsn_diff(env: &Env, db: &str, since: &str) -> Result<i64> {
    let s = psql(
        env,
        db,
        &format!("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{since}')::int8"),
    )?;
    s.parse().with_context(|| format!("WAL difference {s:?}"))
}
