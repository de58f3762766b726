//! The SVG rendering (`rows_per_day.svg`): a stacked bar chart of rows per day and table.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::{DayRows, Report};

impl Report {
    /// A stacked bar chart of rows per day and table, as a standalone SVG document.
    #[must_use]
    pub fn rows_per_day_svg(&self) -> String {
        rows_per_day_svg(&self.rows_per_day)
    }
}

/// Text safe inside SVG/XML.
pub(super) fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// A round axis maximum at or above `max`: 1, 2, 3, 4, 5, 6 or 8 times a power of ten.
fn nice_ceiling(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 3, 4, 5, 6, 8] {
            let v = step.saturating_mul(m);
            if v >= max {
                return v.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

/// The SVG chart of [`Report::rows_per_day_svg`].
#[must_use]
pub fn rows_per_day_svg(days: &[DayRows]) -> String {
    const LEFT: f64 = 70.0;
    const TOP: f64 = 50.0;
    const PLOT_H: f64 = 300.0;
    const BOTTOM: f64 = 60.0;
    const RIGHT: f64 = 20.0;
    let tables: Vec<&str> = days
        .iter()
        .flat_map(|d| d.by_table.keys().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let n = days.len().max(1) as f64;
    let step = (900.0 / n).clamp(1.0, 14.0);
    let plot_w = (step * n).max(300.0);
    let width = LEFT + plot_w + RIGHT;
    let height = TOP + PLOT_H + BOTTOM;
    let max = days.iter().map(|d| d.total).max().unwrap_or(0);
    let top_value = nice_ceiling(max);
    #[allow(clippy::cast_precision_loss)]
    let scale = PLOT_H / top_value as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="18" font-size="14" font-weight="bold">Rows per day (UTC day of the extraction window)</text>"#
    );
    if days.is_empty() {
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{:.0}">no rows yet</text></svg>"#,
            TOP + PLOT_H / 2.0
        );
        return s;
    }
    // Legend.
    let mut x = LEFT;
    for (i, t) in tables.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            s,
            r#"<rect x="{x:.0}" y="28" width="10" height="10" fill="{color}"/><text x="{:.0}" y="37">{}</text>"#,
            x + 14.0,
            xml(t)
        );
        #[allow(clippy::cast_precision_loss)]
        let w = t.len() as f64 * 6.5 + 30.0;
        x += w;
    }
    // Grid and y labels.
    for k in 0..=4u64 {
        #[allow(clippy::cast_precision_loss)]
        let value = top_value * k / 4;
        #[allow(clippy::cast_precision_loss)]
        let y = TOP + PLOT_H - value as f64 * scale;
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.0}" y="{:.1}" text-anchor="end">{value}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    // Bars, stacked in table order.
    let bar_w = if step > 2.0 { step - 1.0 } else { step };
    for (i, d) in days.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let x = LEFT + i as f64 * step;
        let mut y = TOP + PLOT_H;
        for (ti, t) in tables.iter().enumerate() {
            let Some(&rows) = d.by_table.get(*t) else {
                continue;
            };
            #[allow(clippy::cast_precision_loss)]
            let h = rows as f64 * scale;
            y -= h;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.2}" y="{y:.2}" width="{bar_w:.2}" height="{h:.2}" fill="{}"><title>{} {}: {rows} rows</title></rect>"#,
                PALETTE[ti % PALETTE.len()],
                d.day,
                xml(t)
            );
        }
    }
    // X labels: the first day, then the first of each month (or of every few months).
    let months = days
        .iter()
        .filter(|d| d.day.ends_with("-01"))
        .count()
        .max(1);
    #[allow(clippy::cast_precision_loss)]
    let every = ((months as f64 * 70.0 / plot_w).ceil() as usize).max(1);
    let mut month_index = 0usize;
    for (i, d) in days.iter().enumerate() {
        let first_of_month = d.day.ends_with("-01");
        let label = if i == 0 {
            true
        } else if first_of_month {
            month_index += 1;
            month_index.is_multiple_of(every)
        } else {
            false
        };
        if !label {
            continue;
        }
        #[allow(clippy::cast_precision_loss)]
        let x = LEFT + i as f64 * step;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/><text x="{x:.1}" y="{:.1}" transform="rotate(30 {x:.1} {:.1})">{}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 5.0,
            TOP + PLOT_H + 16.0,
            TOP + PLOT_H + 16.0,
            d.day
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/></svg>"##,
        TOP + PLOT_H,
        LEFT + plot_w,
        TOP + PLOT_H
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str, tables: &[(&str, u64)]) -> DayRows {
        DayRows {
            day: d.to_owned(),
            total: tables.iter().map(|t| t.1).sum(),
            by_table: tables.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect(),
        }
    }

    #[test]
    fn svg_has_one_bar_per_table_and_day_with_rows() {
        let days = vec![
            day(
                "2024-01-31",
                &[("raw.qb_invoices", 10), ("raw.qb_items", 3)],
            ),
            day("2024-02-01", &[]),
            day("2024-02-02", &[("raw.qb_invoices", 4)]),
        ];
        let svg = rows_per_day_svg(&days);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("2024-01-31 raw.qb_invoices: 10 rows"));
        assert!(svg.contains(">2024-02-01<"), "first of the month labelled");
        // The axis tops out at a round number at or above the largest day.
        assert!(svg.contains(">20<"));
        assert!(rows_per_day_svg(&[]).contains("no rows yet"));
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(7), 8);
        assert_eq!(nice_ceiling(13), 20);
        assert_eq!(nice_ceiling(201), 300);
        assert_eq!(nice_ceiling(290), 300);
        assert_eq!(nice_ceiling(1000), 1000);
    }
}
