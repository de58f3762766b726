//! `scale`: five years of invoices; peak RSS (flat against the ingest run) and rows per second.

use anyhow::Result;

use super::db::{create_database, drop_database, table_rows};
use super::pipeline::{pipeline_args, run_pipeline, unlimited_client_flags};
use super::sim::{Sim, endpoint_total, unlimited_sim_args};
use super::{Env, Outcome, stat_f64};

pub(super) fn scenario_scale(env: &Env, ingest_rss: Option<f64>) -> Result<Outcome> {
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
