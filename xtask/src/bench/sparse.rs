//! `sparse`: three years planned, data in two months; the QBO requests the run needs.

use anyhow::Result;

use super::db::{create_database, drop_database, table_rows};
use super::pipeline::{pipeline_args, run_pipeline, unlimited_client_flags};
use super::sim::{Sim, endpoint_total, unlimited_sim_args};
use super::{Env, Outcome, stat_f64};

pub(super) fn scenario_sparse(env: &Env) -> Result<Outcome> {
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
