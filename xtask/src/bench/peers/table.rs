//! The figures of a limits setting: requests from the simulator's statistics, medians, and
//! the Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::{Contender, Measured, Truth};

/// Requests to the simulator's API (query, batch, read, CDC, token), not its control routes
/// or the discovery document.
pub(super) fn api_requests(stats: &Value) -> u64 {
    stats["by_endpoint"].as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| !matches!(k.as_str(), "control" | "discovery" | "other"))
            .flat_map(|(_, v)| v.as_object().into_iter().flat_map(|s| s.values()))
            .filter_map(Value::as_u64)
            .sum()
    })
}

pub(super) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(super) fn mode_table(
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
