//! `GET /`: the page, rendered on the server as one self-contained HTML document (inline CSS,
//! no script, no external asset). Every text read from the database goes through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write;

use raw_sink::{Run, TriggerStatus, WindowVolume};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::snapshot::{PipelineState, Snapshot};

/// `s` with the characters that mean something in HTML (`& < > " '`) written as entities, safe
/// in element text and in quoted attribute values.
#[must_use]
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(crate) fn utc(t: OffsetDateTime) -> String {
    let f = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    t.to_offset(time::UtcOffset::UTC)
        .format(&f)
        .unwrap_or_else(|_| t.to_string())
}

const STYLE: &str = r"
:root{--done:#2e7d32;--failed:#c62828;--mismatch:#ef6c00;--pending:#9e9e9e;--running:#1565c0;
--fg:#1b1b1b;--muted:#5f6368;--line:#ddd;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif}
body{margin:0;color:var(--fg);background:#fafafa}
header{background:#263238;color:#fff;padding:.8rem 1rem}
header h1{margin:0;font-size:1.2rem}header p{margin:.2rem 0 0;font-size:.85rem;opacity:.8}
main{padding:0 1rem 2rem;max-width:72rem;margin:0 auto}
section{background:#fff;border:1px solid var(--line);border-radius:6px;margin:1rem 0;padding:.6rem .9rem}
h2{font-size:1.05rem;margin:.3rem 0 .6rem}h3{font-size:.95rem;margin:.8rem 0 .3rem}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .4rem;border-radius:3px;color:#fff;font-size:.8rem;background:var(--pending)}
.b-succeeded,.b-completed,.b-done,.b-match{background:var(--done)}
.b-failed,.b-mismatch{background:var(--failed)}.b-partial,.b-quarantined{background:var(--mismatch)}
.b-running{background:var(--running)}.b-disabled,.b-interrupted{background:#616161}
.b-ok{background:var(--done)}.b-expiring{background:var(--mismatch)}.b-expired,.b-refused,.b-no-token{background:var(--failed)}
.cards{display:flex;flex-wrap:wrap;gap:.5rem}
.card{flex:1 1 8rem;border:1px solid var(--line);border-radius:4px;padding:.4rem .6rem}
.card b{display:block;font-size:1.3rem}
.heat{display:flex;flex-wrap:wrap;gap:2px;margin:.2rem 0 .6rem}
.cell{width:14px;height:14px;border-radius:2px;background:var(--pending)}
.cell.done{background:var(--done)}.cell.failed{background:var(--failed)}
.cell.mismatch{background:var(--mismatch)}.cell.running{background:var(--running)}
.cell.unverified{outline:2px dashed var(--mismatch);outline-offset:-2px}
.legend{font-size:.8rem;color:var(--muted)}.legend .cell{display:inline-block;vertical-align:middle;margin:0 .2rem 0 .6rem}
.muted{color:var(--muted)}.err{color:var(--failed);word-break:break-word;min-width:12rem}
td.t{white-space:nowrap}
@media (max-width:600px){main{padding:0 .4rem 1rem}section{padding:.5rem}th,td{padding:.2rem .3rem}}
";

/// The page for `snap`.
#[must_use]
pub fn render_page(snap: &Snapshot) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>qb-backfill status</title><style>",
    );
    h.push_str(STYLE);
    h.push_str("</style></head><body><header><h1>qb-backfill status</h1>");
    let _ = write!(
        h,
        "<p>Read from the ledger at {} (read-only; reload for fresh figures)</p></header><main>",
        utc(snap.taken_at)
    );
    runs(&mut h, snap);
    triggers(&mut h, snap);
    heatmaps(&mut h, snap);
    verification(&mut h, snap);
    volumetry(&mut h, snap);
    problems(&mut h, snap);
    crate::upkeep::connections(&mut h, snap);
    crate::upkeep::syncs(&mut h, snap);
    crate::books::section(&mut h, snap);
    h.push_str("</main></body></html>\n");
    h
}

pub(crate) fn badge(h: &mut String, status: &str) {
    let s = escape(status);
    let class = s.replace(' ', "-");
    let _ = write!(h, "<span class=\"badge b-{class}\">{s}</span>");
}

fn runs(h: &mut String, snap: &Snapshot) {
    h.push_str("<section id=\"runs\"><h2>Recent runs</h2>");
    if snap.runs.is_empty() {
        h.push_str("<p class=\"muted\">No run recorded yet.</p></section>");
        return;
    }
    h.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>run</th><th>pipeline</th><th>realm</th>\
         <th>range</th><th>status</th><th class=\"n\">windows done / planned</th>\
         <th class=\"n\">skipped</th><th class=\"n\">failed</th><th class=\"n\">mismatch</th>\
         <th class=\"n\">rows</th><th class=\"n\">ins / upd / unch</th>\
         <th class=\"n\">API calls</th><th>started</th><th>error</th></tr></thead><tbody>",
    );
    for r in &snap.runs {
        let s = &r.summary;
        let _ = write!(
            h,
            "<tr data-run=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"t\">{} → {}</td><td>",
            r.id.get(),
            r.id.get(),
            escape(&r.pipeline),
            escape(&r.realm_id),
            utc(r.range_start),
            utc(r.range_end),
        );
        badge(h, s.status.as_str());
        let _ = write!(
            h,
            "</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{} / {} / {}</td>\
             <td class=\"n\" data-api-calls>{}</td><td class=\"t\">{}</td><td class=\"err\">{}</td></tr>",
            s.windows_done,
            r.windows_planned,
            s.windows_skipped,
            s.windows_failed,
            s.windows_mismatch,
            s.rows,
            s.inserted,
            s.updated,
            s.unchanged,
            s.api_calls,
            utc(r.started_at),
            escape(s.error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table></div></section>");
}

fn triggers(h: &mut String, snap: &Snapshot) {
    h.push_str("<section id=\"triggers\"><h2>Triggers</h2><div class=\"cards\">");
    for status in [
        TriggerStatus::Pending,
        TriggerStatus::Running,
        TriggerStatus::Completed,
        TriggerStatus::Disabled,
    ] {
        let n = snap.triggers.iter().filter(|t| t.status == status).count();
        let _ = write!(
            h,
            "<div class=\"card\" data-trigger-status=\"{s}\"><b>{n}</b>{s}</div>",
            s = status.as_str()
        );
    }
    h.push_str("</div>");
    if !snap.triggers.is_empty() {
        h.push_str(
            "<div class=\"scroll\"><table><thead><tr><th>trigger</th><th>pipeline</th>\
             <th>realm</th><th>range</th><th>status</th><th>completed</th><th class=\"n\">last run</th>\
             </tr></thead><tbody>",
        );
        for t in &snap.triggers {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} → {}</td><td>",
                escape(&t.key.name),
                escape(&t.key.pipeline),
                escape(&t.key.realm_id),
                utc(t.range_start),
                utc(t.range_end),
            );
            badge(h, t.status.as_str());
            let _ = write!(
                h,
                "</td><td>{}</td><td class=\"n\">{}</td></tr>",
                t.completed_at.map(utc).unwrap_or_default(),
                t.last_run_id
                    .map(|r| r.get().to_string())
                    .unwrap_or_default(),
            );
        }
        h.push_str("</tbody></table></div>");
    }
    h.push_str("</section>");
}

fn cell_title(w: &WindowVolume) -> String {
    let mut t = format!(
        "{} → {} · {} · {}",
        utc(w.span.start),
        utc(w.span.end),
        w.status.as_str(),
        w.verification().as_str()
    );
    let _ = write!(t, " · {} loaded", w.loaded);
    if let Some(n) = w.source_count {
        let _ = write!(t, " · COUNT {n}");
    }
    if let Some(e) = &w.last_error {
        let _ = write!(t, " · {e}");
    }
    t
}

fn heatmaps(h: &mut String, snap: &Snapshot) {
    h.push_str(
        "<section id=\"windows\"><h2>Windows</h2><p class=\"legend\">\
         <span class=\"cell done\"></span>done<span class=\"cell failed\"></span>failed\
         <span class=\"cell mismatch\"></span>mismatch<span class=\"cell running\"></span>running\
         <span class=\"cell\"></span>pending<span class=\"cell done unverified\"></span>done, \
         not verified</p>",
    );
    if snap.pipelines.is_empty() {
        h.push_str("<p class=\"muted\">No window in the ledger yet.</p>");
    }
    for p in &snap.pipelines {
        let _ = write!(
            h,
            "<div class=\"pipeline\" data-pipeline=\"{0}\"><h3>{0} <span class=\"muted\">({1}, {2} windows)</span></h3>",
            escape(&p.source.pipeline),
            escape(&p.source.entity),
            p.windows.len()
        );
        let mut rows: BTreeMap<(&str, &str), Vec<&WindowVolume>> = BTreeMap::new();
        for w in &p.windows {
            rows.entry((&w.scope.realm_id, &w.scope.window_field))
                .or_default()
                .push(w);
        }
        for ((realm, field), windows) in rows {
            let _ = write!(
                h,
                "<div class=\"muted\">realm {} · {}</div><div class=\"heat\">",
                escape(realm),
                escape(field)
            );
            for w in windows {
                let unverified = w.verification() == raw_sink::Verification::Unverified;
                let _ = write!(
                    h,
                    "<span class=\"cell {s}{u}\" data-status=\"{s}\" data-verification=\"{v}\" \
                     data-start=\"{start}\" title=\"{t}\"></span>",
                    s = w.status.as_str(),
                    u = if unverified { " unverified" } else { "" },
                    v = w.verification().as_str(),
                    start = utc(w.span.start),
                    t = escape(&cell_title(w)),
                );
            }
            h.push_str("</div>");
        }
        h.push_str("</div>");
    }
    h.push_str("</section>");
}

fn verification(h: &mut String, snap: &Snapshot) {
    h.push_str(
        "<section id=\"verification\"><h2>Verification</h2><div class=\"scroll\"><table><thead>\
         <tr><th>pipeline</th><th class=\"n\">match</th><th class=\"n\">quarantined</th>\
         <th class=\"n\">mismatch</th><th class=\"n\">not done</th><th class=\"n\">unverified</th>\
         </tr></thead><tbody>",
    );
    for PipelineState {
        source,
        verification: v,
        ..
    } in &snap.pipelines
    {
        let _ = write!(
            h,
            "<tr data-pipeline=\"{}\"><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&source.pipeline),
            escape(&source.pipeline),
            v.matched,
            v.quarantined,
            v.mismatch,
            v.not_done,
            v.unverified
        );
    }
    h.push_str("</tbody></table></div></section>");
}

fn volumetry(h: &mut String, snap: &Snapshot) {
    h.push_str(
        "<section id=\"volumetry\"><h2>Raw tables</h2><div class=\"scroll\"><table><thead><tr>\
         <th>table</th><th>entity</th><th class=\"n\">rows</th><th class=\"n\">realms</th>\
         <th>windows from</th><th>to</th><th>last write</th><th class=\"n\">size</th></tr>\
         </thead><tbody>",
    );
    for (source, t) in &snap.tables {
        let _ = write!(
            h,
            "<tr data-table=\"{}\"><td>{}</td><td>{}</td><td class=\"n\" data-rows>{}</td>\
             <td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{} KiB</td></tr>",
            escape(&t.table.to_string()),
            escape(&t.table.to_string()),
            escape(&source.entity),
            t.rows,
            t.realms,
            t.first_window_start.map(utc).unwrap_or_default(),
            t.last_window_end.map(utc).unwrap_or_default(),
            t.last_ingested_at.map(utc).unwrap_or_default(),
            t.table_bytes / 1024,
        );
    }
    if snap.tables.is_empty() {
        h.push_str("<tr><td colspan=\"8\" class=\"muted\">No rows yet.</td></tr>");
    }
    h.push_str("</tbody></table></div></section>");
}

fn problems(h: &mut String, snap: &Snapshot) {
    h.push_str(
        "<section id=\"problems\"><h2>Problem windows per run</h2><p class=\"legend\">Windows \
         in each run's range that are not a verified match, as the ledger holds them now.</p>",
    );
    let mut any = false;
    for r in &snap.runs {
        let windows = snap.problem_windows(r);
        if windows.is_empty() {
            continue;
        }
        any = true;
        run_problems(h, r, &windows);
    }
    if !any {
        h.push_str("<p class=\"muted\">None.</p>");
    }
    h.push_str("</section>");
}

fn run_problems(h: &mut String, r: &Run, windows: &[&WindowVolume]) {
    let _ = write!(
        h,
        "<h3 data-run=\"{}\">run {} · {} · realm {}</h3><div class=\"scroll\"><table><thead><tr>\
         <th>window</th><th>status</th><th>verification</th><th class=\"n\">loaded</th>\
         <th class=\"n\">COUNT</th><th class=\"n\">attempts</th><th>last error</th></tr></thead>\
         <tbody>",
        r.id.get(),
        r.id.get(),
        escape(&r.pipeline),
        escape(&r.realm_id)
    );
    for w in windows {
        let _ = write!(
            h,
            "<tr><td>{} → {}</td><td>",
            utc(w.span.start),
            utc(w.span.end)
        );
        badge(h, w.status.as_str());
        h.push_str("</td><td>");
        badge(h, w.verification().as_str());
        let _ = write!(
            h,
            "</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"err\">{}</td></tr>",
            w.loaded,
            w.source_count.map(|n| n.to_string()).unwrap_or_default(),
            w.attempts,
            escape(w.last_error.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn empty_ledger_page_is_complete() {
        let snap = Snapshot {
            taken_at: OffsetDateTime::UNIX_EPOCH,
            runs: vec![],
            triggers: vec![],
            pipelines: vec![],
            tables: vec![],
            connections: vec![],
            syncs: vec![],
            book_checks: vec![],
        };
        let page = render_page(&snap);
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("name=\"viewport\""));
        assert!(page.contains("No run recorded yet."));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "external asset"
        );
        assert!(page.ends_with("</html>\n"));
    }
}
