//! `ingest`: a year of invoices at zero latency and without API limits into a fresh database,
//! against the PostgreSQL COPY floor for the same rows. Its load is kept for `rerun`.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use super::db::{create_database, db_url, drop_database, psql, relation_size, table_rows};
use super::machine::cores;
use super::pipeline::{pipeline_args, run_pipeline, unlimited_client_flags};
use super::sim::{Sim, endpoint_total, unlimited_sim_args};
use super::{Env, Outcome, stat_u64};

/// The simulator and database of the ingest load, kept for the re-run.
pub(super) struct IngestFixture {
    pub(super) sim: Sim,
    pub(super) db: String,
    pub(super) args: Vec<String>,
}

impl IngestFixture {
    pub(super) fn finish(self, env: &Env) {
        drop(self.sim);
        if !env.opts.keep {
            let _ = drop_database(env, &self.db);
        }
    }
}

const INGEST_START: &str = "2024-01-01";

const INGEST_END: &str = "2025-01-01";

pub(super) fn start_ingest_fixture(
    env: &Env,
    out: &mut Outcome,
    for_rerun: bool,
) -> Result<IngestFixture> {
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

pub(super) fn scenario_ingest(env: &Env, slot: &mut Option<IngestFixture>) -> Result<Outcome> {
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
