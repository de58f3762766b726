//! The page's "books check" section and its metrics: the latest `check-books` of each company
//! ([`Sink::latest_book_checks`]) — what was compared and when, every difference, the entities
//! the books hold that were never loaded (with the command that loads them). A month the check
//! did not reach is named as not compared, never shown as agreeing; a check older than the
//! company's latest load is flagged stale.

use std::fmt::Write as _;

use prometheus_client::registry::Unit;
use raw_sink::{BookCheck, BookCheckKind, Sink};

use crate::html::{badge, escape, utc};
use crate::metrics::{Metrics, figure, label_value, unix_seconds};
use crate::{Snapshot, StatusError};

/// Rows of a check that are not agreements: month × entity differences, entities never
/// loaded (per month) and transaction types no raw table carries (per month).
#[must_use]
pub fn differences(c: &BookCheck) -> u64 {
    c.rows
        .iter()
        .filter(|r| r.kind != BookCheckKind::Agrees)
        .count() as u64
}

fn compared(c: &BookCheck) -> String {
    match c.compared_through {
        Some(t) if t >= c.range_end => format!(
            "{}..{} ({} months)",
            c.range_start, c.range_end, c.months_compared
        ),
        Some(t) => format!(
            "{}..{t} ({} of {} months); {}..{} <strong>not compared</strong>",
            c.range_start,
            c.months_compared,
            c.months_planned,
            t.next_day().unwrap_or(t),
            c.range_end
        ),
        None => format!(
            "<strong>nothing compared</strong> of {}..{}",
            c.range_start, c.range_end
        ),
    }
}

fn month(d: time::Date) -> String {
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

/// The section: one card per company.
pub(crate) fn section(h: &mut String, snap: &Snapshot) {
    h.push_str("<section id=\"books\"><h2>Books check</h2>");
    if snap.book_checks.is_empty() {
        h.push_str(
            "<p class=\"muted\">No <code>check-books</code> recorded yet: run \
             <code>qb-backfill check-books --start … --end …</code>.</p></section>",
        );
        return;
    }
    h.push_str(
        "<p class=\"legend\">The latest <code>check-books</code> per company: QuickBooks' \
         TransactionList against the raw tables' live rows, per month and entity (count and \
         total in home currency). Only the months compared are shown.</p>",
    );
    for c in &snap.book_checks {
        let diffs = differences(c);
        let _ = write!(
            h,
            "<div class=\"card\" data-book-check=\"{}\" data-realm=\"{}\" data-differences=\"{diffs}\" \
             data-stale=\"{}\"><p>realm <strong>{}</strong> · check {} ",
            c.id,
            escape(&c.realm_id),
            c.stale,
            escape(&c.realm_id),
            c.id,
        );
        badge(h, c.status.as_str());
        let _ = write!(
            h,
            " · {} → {} · compared {} · {} · {} QBO calls</p>",
            utc(c.started_at),
            c.finished_at.map_or_else(|| "-".to_owned(), utc),
            compared(c),
            escape(&c.accounting_method),
            c.api_calls
        );
        if c.stale {
            let _ = write!(
                h,
                "<p class=\"err\" data-stale-note>Stale: a load ended at {} after this check \
                 started; run <code>check-books</code> again.</p>",
                c.last_load_at.map_or_else(|| "?".to_owned(), utc)
            );
        }
        if let Some(e) = &c.error {
            let _ = write!(h, "<p class=\"err\">{}</p>", escape(e));
        }
        let agreed = c
            .rows
            .iter()
            .filter(|r| r.kind == BookCheckKind::Agrees)
            .count();
        let _ = write!(
            h,
            "<p>{agreed} month × entity totals agree; {diffs} differ.</p>"
        );
        if diffs > 0 {
            h.push_str(
                "<div class=\"scroll\"><table><thead><tr><th>month</th><th>kind</th>\
                 <th>entity / type</th><th>types</th><th class=\"n\">books</th>\
                 <th class=\"n\">books amount</th><th class=\"n\">raw</th>\
                 <th class=\"n\">raw amount</th><th>to do</th></tr></thead><tbody>",
            );
            for r in c.rows.iter().filter(|r| r.kind != BookCheckKind::Agrees) {
                let todo = match r.kind {
                    BookCheckKind::NotLoaded => {
                        format!("<code>qb-backfill --entity {}</code>", escape(&r.label))
                    }
                    BookCheckKind::Unmapped => "no raw table carries it".to_owned(),
                    _ => String::new(),
                };
                let _ = write!(
                    h,
                    "<tr data-book-row=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td>{todo}</td></tr>",
                    r.kind.as_str(),
                    month(r.month),
                    r.kind.as_str(),
                    escape(&r.label),
                    escape(&r.txn_types.join(", ")),
                    r.books_rows,
                    escape(&r.books_amount),
                    r.raw_rows.map_or_else(|| "—".to_owned(), |n| n.to_string()),
                    escape(r.raw_amount.as_deref().unwrap_or("—")),
                );
            }
            h.push_str("</tbody></table></div>");
        }
        h.push_str("</div>");
    }
    h.push_str("</section>");
}

/// `books_check_differences`, `books_check_timestamp_seconds`, `books_check_stale` and
/// `books_check_months_compared` per company, from its latest check.
pub(crate) async fn metrics(m: &mut Metrics, sink: &Sink) -> Result<(), StatusError> {
    let diffs = m.gauges(
        "books_check_differences",
        "Month × entity differences, entities never loaded and unmapped types found by the latest check-books",
        None,
    );
    let when = m.gauges(
        "books_check_timestamp",
        "When the latest check-books finished (Unix time)",
        Some(Unit::Seconds),
    );
    let stale = m.gauges(
        "books_check_stale",
        "1 when a load ended after the latest check-books started",
        None,
    );
    let months = m.gauges(
        "books_check_months_compared",
        "Months the latest check-books compared",
        None,
    );
    for c in sink
        .latest_book_checks(None)
        .await
        .map_err(StatusError::Database)?
    {
        let labels = vec![("realm", label_value(&c.realm_id))];
        diffs.get_or_create(&labels).set(figure(differences(&c)));
        if let Some(t) = c.finished_at {
            when.get_or_create(&labels).set(unix_seconds(t));
        }
        stale
            .get_or_create(&labels)
            .set(if c.stale { 1.0 } else { 0.0 });
        months
            .get_or_create(&labels)
            .set(figure(u64::from(c.months_compared)));
    }
    Ok(())
}
