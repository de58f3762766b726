//! `latency`: the pipeline at QBO's real speed. 100k invoices over six months behind QBO's
//! limits (500/min, 10/s, 10 in flight) and a latency that grows with the rows of an answer
//! (a COUNT or an empty page answers in the base latency, a full page in the figure named),
//! at full-page latencies of 0.3, 1, 2 and 4 s.
//!
//! The floor of a run is the pages the data needs, ⌈N/1000⌉, at the best rate QBO allows:
//! min(500/min, 10 in flight ÷ the mean full-page latency). Little's law: at 2 s a page, ten
//! requests in flight answer five pages a second, under the 8.3/s of 500/min; at 0.3 s the
//! per-minute budget binds.

use anyhow::Result;

use super::db::{create_database, drop_database, table_rows};
use super::pipeline::{pipeline_args, run_pipeline};
use super::sim::{Sim, endpoint_total};
use super::{Env, Outcome, stat_f64, stat_u64, strings};

/// Full-page latencies measured, in ms.
pub(super) const FULL_PAGE_MS: [u64; 4] = [300, 1000, 2000, 4000];

/// The simulator's latency model for a full-page latency of `full_ms`: the base (what a COUNT
/// takes; 150 ms as on QBO, at most half the full page), the per-row cost that brings a page
/// of 1,000 rows to `full_ms`, and a jitter of a tenth of it (uniform, added).
pub(super) fn latency_model(full_ms: u64) -> (u64, u64, u64) {
    let base_ms = 150.min(full_ms / 2);
    // (full − base) ms spread over 1,000 rows: that many µs a row.
    let per_row_us = full_ms - base_ms;
    let jitter_ms = full_ms / 10;
    (base_ms, per_row_us, jitter_ms)
}

/// The floor in seconds: `pages` at min(`per_minute`/60, `in_flight` ÷ `mean_page_s`).
pub(super) fn floor_secs(pages: u64, mean_page_s: f64, per_minute: f64, in_flight: f64) -> f64 {
    let rate = (per_minute / 60.0).min(in_flight / mean_page_s);
    pages as f64 / rate
}

pub(super) fn scenario_latency(env: &Env) -> Result<Outcome> {
    let mut out = Outcome::default();
    let n = env.sizes.latency;
    let (start, end) = ("2024-01-01", "2024-07-01");
    let pages = n.div_ceil(1000);
    let query_target = (1.10 * pages as f64).floor() + 5.0;
    for full_ms in FULL_PAGE_MS {
        let (base_ms, per_row_us, jitter_ms) = latency_model(full_ms);
        let label = format!("latency-{full_ms}ms");
        let sim_args = strings(&[
            "--invoices",
            &n.to_string(),
            "--start",
            start,
            "--end",
            end,
            "--latency-ms",
            &base_ms.to_string(),
            "--latency-per-row-us",
            &per_row_us.to_string(),
            "--jitter-ms",
            &jitter_ms.to_string(),
            "--requests-per-min",
            "500",
            "--max-concurrency",
            "10",
        ]);
        let sim = Sim::start(env, &label, &sim_args)?;
        let db = "qb_bench_latency";
        create_database(env, db)?;
        let args = pipeline_args(env, start, end, "bench-latency", &[]);
        let run = run_pipeline(env, &sim, db, &args, &label)?;
        let stats = sim.stats()?;
        let loaded = table_rows(env, db, "raw.qb_invoices")?;
        let queries = endpoint_total(&stats, "query");
        let throttled = stat_u64(&stats, "throttled");
        let wall = run.wall.as_secs_f64();
        let mean_page_s = (full_ms as f64 + jitter_ms as f64 / 2.0) / 1000.0;
        let floor = floor_secs(pages, mean_page_s, 500.0, 10.0);
        let metered = stat_f64(&run.finished, "api_calls");
        let rss_mb = run.max_rss_kb as f64 / 1024.0;
        let s = full_ms as f64 / 1000.0;
        out.fig(format!("{s}s_wall"), wall, "s");
        out.fig(format!("{s}s_floor"), floor, "s");
        out.fig(format!("{s}s_wall_div_floor"), wall / floor, "x");
        out.fig(format!("{s}s_queries"), queries as f64, "requests");
        out.fig(
            format!("{s}s_count_queries"),
            stat_f64(&stats, "count_queries"),
            "requests",
        );
        out.fig(format!("{s}s_metered_calls"), metered, "calls");
        out.fig(format!("{s}s_throttled_429"), throttled as f64, "responses");
        out.fig(
            format!("{s}s_peak_in_flight"),
            stat_f64(&stats, "peak_concurrency"),
            "requests",
        );
        out.fig(format!("{s}s_peak_rss_mb"), rss_mb, "MB");
        out.target(
            format!("{s} s a page: wall <= 1.2x the floor ({wall:.1} s vs {floor:.1} s)"),
            wall <= 1.2 * floor,
        );
        out.target(
            format!("{s} s a page: zero 429s ({throttled})"),
            throttled == 0,
        );
        out.target(
            format!("{s} s a page: queries <= 1.10 x {pages} pages + 5 ({queries})"),
            queries as f64 <= query_target,
        );
        out.target(
            format!("{s} s a page: peak RSS < 100 MB ({rss_mb:.0} MB)"),
            rss_mb < 100.0,
        );
        if loaded != n {
            out.notes.push(format!(
                "WARNING ({s} s a page): {loaded} rows loaded, {n} expected"
            ));
        }
        out.commands.push(sim.command(env));
        out.commands.push(run.command.clone());
        drop(sim);
        if !env.opts.keep {
            drop_database(env, db)?;
        }
    }
    out.notes.push(format!(
        "{n} invoices created {start}..{end}; latency = base (min(150 ms, half the page)) + \
         rows x per-row cost + uniform 0..page/10 jitter; floor = {pages} pages at \
         min(500/min, 10 / mean full-page latency){}",
        if env.opts.quick {
            "; QUICK mode: 20k invoices instead of 100k"
        } else {
            ""
        }
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_reaches_the_full_page_latency_and_the_floor_follows_littles_law() {
        // 150 ms + 1,000 rows x 1.85 ms = 2 s.
        assert_eq!(latency_model(2000), (150, 1850, 200));
        assert_eq!(latency_model(300), (150, 150, 30));
        // 100 pages: at 0.3 s the 500/min budget binds (12 s); at 4 s, 10 in flight do (40 s).
        assert!((floor_secs(100, 0.3, 500.0, 10.0) - 12.0).abs() < 1e-9);
        assert!((floor_secs(100, 4.0, 500.0, 10.0) - 40.0).abs() < 1e-9);
    }
}
