//! `rerun`: the ingest range again with `--force`; wall time, rows written and WAL written.

use anyhow::{Result, bail};

use super::db::{psql, tuple_counters, wal_lsn, wal_lsn_diff};
use super::ingest::{IngestFixture, start_ingest_fixture};
use super::pipeline::run_pipeline;
use super::sim::endpoint_total;
use super::{Env, Outcome, stat_f64};

pub(super) fn scenario_rerun(env: &Env, slot: &mut Option<IngestFixture>) -> Result<Outcome> {
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
