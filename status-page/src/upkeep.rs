//! The page's sections on what keeps the raw layer current after the backfill: each connected
//! company's token facts (`auth status` as a table: expiries, rotation, last success; a token is
//! never read) and the latest `sync` / `reconcile` of each pipeline.

use std::fmt::Write as _;

use raw_sink::TokenMetaRow;
use time::{Duration, OffsetDateTime};

use crate::Snapshot;
use crate::html::{badge, escape, utc};

/// An expiry closer than this is flagged, as `qb-backfill auth status` and every run warn.
pub const EXPIRY_WARNING: Duration = Duration::days(30);

/// How a connection stands at `now`: `no token`, `expired`, `expiring` (an expiry within
/// [`EXPIRY_WARNING`]) or `ok`.
#[must_use]
pub fn connection_state(c: &TokenMetaRow, now: OffsetDateTime) -> &'static str {
    if !c.has_token {
        return "no token";
    }
    let nearest = [c.refresh_expires_at, c.hard_expires_at]
        .into_iter()
        .flatten()
        .min();
    match nearest {
        Some(t) if t <= now => "expired",
        Some(t) if t - now < EXPIRY_WARNING => "expiring",
        _ => "ok",
    }
}

fn when(h: &mut String, t: Option<OffsetDateTime>, now: Option<OffsetDateTime>) {
    match t {
        None => h.push_str("<td class=\"muted\">unknown</td>"),
        Some(t) => {
            let _ = write!(h, "<td class=\"t\">{}", utc(t));
            if let Some(now) = now {
                let _ = write!(
                    h,
                    " <span class=\"muted\">({} d)</span>",
                    (t - now).whole_days()
                );
            }
            h.push_str("</td>");
        }
    }
}

/// The connections section: one row per company in the token store.
pub(crate) fn connections(h: &mut String, snap: &Snapshot) {
    h.push_str("<section id=\"connections\"><h2>Connections</h2>");
    if snap.connections.is_empty() {
        h.push_str(
            "<p class=\"muted\">No company in the database token store (companies connected \
             with a file token store are not shown).</p></section>",
        );
        return;
    }
    h.push_str(
        "<p class=\"legend\">From the facts kept beside each refresh token; days left in \
         brackets. <code>qb-backfill auth status</code> shows the same.</p>\
         <div class=\"scroll\"><table><thead><tr><th>realm</th><th>company</th><th>app</th>\
         <th>state</th><th>refresh token expires</th><th>hard expiry</th><th>rotated</th>\
         <th>last success</th></tr></thead><tbody>",
    );
    for c in &snap.connections {
        let state = connection_state(c, snap.taken_at);
        let _ = write!(
            h,
            "<tr data-realm=\"{r}\" data-connection=\"{state}\"><td>{r}</td><td>{}</td><td>{}</td><td>",
            escape(c.company_name.as_deref().unwrap_or("")),
            escape(c.client_id.as_deref().unwrap_or("")),
            r = escape(&c.realm_id),
        );
        badge(h, state);
        h.push_str("</td>");
        when(h, c.refresh_expires_at, Some(snap.taken_at));
        when(h, c.hard_expires_at, Some(snap.taken_at));
        when(h, c.rotated_at, None);
        when(h, c.last_success_at, None);
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table></div></section>");
}

/// The syncs section: the latest sync or reconcile per pipeline and company.
pub(crate) fn syncs(h: &mut String, snap: &Snapshot) {
    h.push_str("<section id=\"syncs\"><h2>Syncs</h2>");
    if snap.syncs.is_empty() {
        h.push_str("<p class=\"muted\">No sync or reconcile recorded yet.</p></section>");
        return;
    }
    h.push_str(
        "<p class=\"legend\">Lag: how long ago the last successful sync asked QuickBooks for \
         deletions; past 30 days a sync is refused and <code>reconcile</code> is needed.</p>\
         <div class=\"scroll\"><table><thead><tr><th>pipeline</th><th>realm</th><th>kind</th>\
         <th>status</th><th>started</th><th class=\"n\">lag (h)</th>\
         <th class=\"n\">ins / upd / unch</th><th class=\"n\">tombstoned</th>\
         <th class=\"n\">API calls (all syncs)</th><th>error</th></tr></thead><tbody>",
    );
    for s in &snap.syncs {
        let t = &s.last.tally;
        let _ = write!(
            h,
            "<tr data-sync=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>",
            s.last.id.get(),
            escape(&s.pipeline),
            escape(&s.realm_id),
            escape(s.last.kind.as_str()),
        );
        badge(h, s.last.status.as_str());
        let lag = s
            .lag_seconds
            .map_or_else(|| "—".to_owned(), |l| format!("{:.1}", l as f64 / 3600.0));
        let _ = write!(
            h,
            "</td><td class=\"t\">{}</td><td class=\"n\">{lag}</td><td class=\"n\">{} / {} / {}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{} ({})</td><td class=\"err\">{}</td></tr>",
            utc(s.last.started_at),
            t.inserted,
            t.updated,
            t.unchanged,
            t.tombstoned,
            t.api_calls,
            s.total_api_calls,
            escape(s.last.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table></div></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(refresh_in_days: i64, hard_in_days: i64, now: OffsetDateTime) -> TokenMetaRow {
        TokenMetaRow {
            realm_id: "9130<x>".into(),
            has_token: true,
            company_name: Some("Acme & Sons".into()),
            client_id: Some("app-1".into()),
            connected_at: Some(now - Duration::days(10)),
            rotated_at: Some(now - Duration::days(1)),
            refresh_expires_at: Some(now + Duration::days(refresh_in_days)),
            hard_expires_at: Some(now + Duration::days(hard_in_days)),
            last_success_at: Some(now),
            updated_at: now,
        }
    }

    #[test]
    fn the_nearest_expiry_decides_the_state() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        assert_eq!(connection_state(&row(100, 1800, now), now), "ok");
        assert_eq!(connection_state(&row(29, 1800, now), now), "expiring");
        assert_eq!(connection_state(&row(100, 12, now), now), "expiring");
        assert_eq!(connection_state(&row(-1, 1800, now), now), "expired");
        let mut gone = row(100, 1800, now);
        gone.has_token = false;
        assert_eq!(connection_state(&gone, now), "no token");
    }

    #[test]
    fn connections_are_escaped_and_flag_a_near_expiry() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let snap = Snapshot {
            taken_at: now,
            runs: vec![],
            triggers: vec![],
            pipelines: vec![],
            tables: vec![],
            connections: vec![row(20, 1800, now)],
            syncs: vec![],
            book_checks: vec![],
        };
        let mut h = String::new();
        connections(&mut h, &snap);
        assert!(h.contains("data-connection=\"expiring\""), "{h}");
        assert!(h.contains("Acme &amp; Sons"), "{h}");
        assert!(h.contains("9130&lt;x&gt;") && !h.contains("9130<x>"), "{h}");
        assert!(h.contains("(20 d)"), "{h}");
    }
}
