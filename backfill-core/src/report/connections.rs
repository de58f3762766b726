//! The report's connections section: per connected company, when its refresh token (rolling)
//! and its grant (hard) expire, the days left, and a warning when either is under
//! [`EXPIRY_WARNING_DAYS`] away ([`raw_sink::volumetry::CONNECTIONS_SQL`]; never a token).
//! Its own file so the report's other sections stay apart.

use std::fmt::Write as _;

use raw_sink::{ConnectionExpiry, Sink};
use serde::Serialize;

use super::markdown::md;
use crate::Error;
use crate::cli::EXPIRY_WARNING_DAYS;
use crate::window::format_utc;

/// One connected company's token expiries.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRow {
    /// Company.
    pub realm_id: String,
    /// Its name, when known.
    pub company_name: Option<String>,
    /// The app (client id) it was connected with.
    pub client_id: Option<String>,
    /// Whether a refresh token is stored.
    pub has_token: bool,
    /// When the refresh token last rotated (UTC).
    pub rotated_at: Option<String>,
    /// The last successful API call (UTC).
    pub last_success_at: Option<String>,
    /// The rolling expiry of the refresh token (UTC).
    pub refresh_expires_at: Option<String>,
    /// Whole days to it (negative once past).
    pub refresh_days_left: Option<i64>,
    /// The hard expiry of the grant (UTC).
    pub hard_expires_at: Option<String>,
    /// Whole days to it (negative once past).
    pub hard_days_left: Option<i64>,
    /// Whether either expiry is under the warning period away, or past.
    pub expiring: bool,
    /// What to do about it, one line per expiry (empty when fine).
    pub warnings: Vec<String>,
}

fn row(c: &ConnectionExpiry, now: time::OffsetDateTime) -> ConnectionRow {
    let mut facts = qbo_client::TokenMetadata::new(c.realm_id.clone());
    facts.refresh_expires_at = c.refresh_expires_at;
    facts.hard_expires_at = c.hard_expires_at;
    let mut warnings = crate::cli::expiry_warnings(&facts, now, EXPIRY_WARNING_DAYS);
    if !c.has_token {
        warnings.push("no token is stored: reconnect with `qb-backfill auth connect`".to_owned());
    }
    ConnectionRow {
        realm_id: c.realm_id.clone(),
        company_name: c.company_name.clone(),
        client_id: c.client_id.clone(),
        has_token: c.has_token,
        rotated_at: c.rotated_at.map(format_utc),
        last_success_at: c.last_success_at.map(format_utc),
        refresh_expires_at: c.refresh_expires_at.map(format_utc),
        refresh_days_left: c.refresh_days_left,
        hard_expires_at: c.hard_expires_at.map(format_utc),
        hard_days_left: c.hard_days_left,
        expiring: c.expiring || !c.has_token,
        warnings,
    }
}

/// The connections of `realm_id` (or every company) as of now.
///
/// # Errors
/// [`Error::Database`] when the query fails.
pub(super) async fn connections(
    sink: &Sink,
    realm_id: Option<&str>,
) -> Result<Vec<ConnectionRow>, Error> {
    let days = i32::try_from(EXPIRY_WARNING_DAYS).unwrap_or(i32::MAX);
    let rows = sink
        .ledger()
        .connection_expiries(realm_id, days)
        .await
        .map_err(Error::Database)?;
    let now = time::OffsetDateTime::now_utc();
    Ok(rows.iter().map(|c| row(c, now)).collect())
}

fn expiry(at: Option<&str>, days: Option<i64>) -> String {
    match (at, days) {
        (Some(at), Some(d)) => format!("{at} ({d} days)"),
        (Some(at), None) => at.to_owned(),
        _ => "unknown".to_owned(),
    }
}

/// The Markdown section (empty when no company is connected in the database).
pub(super) fn markdown(rows: &[ConnectionRow]) -> String {
    let mut m = String::new();
    if rows.is_empty() {
        return m;
    }
    let _ = writeln!(
        m,
        "\n## Connections (token expiry)\n\nA warning when the refresh token's rolling expiry or \
         the grant's hard expiry is under {EXPIRY_WARNING_DAYS} days away \
         (`qb-backfill auth status` says the same).\n"
    );
    let _ = writeln!(
        m,
        "| company | name | app | rotated | last success | refresh token expires | hard expiry | warning |"
    );
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|");
    for c in rows {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            md(&c.realm_id),
            md(c.company_name.as_deref().unwrap_or("-")),
            md(c.client_id.as_deref().unwrap_or("-")),
            c.rotated_at.as_deref().unwrap_or("-"),
            c.last_success_at.as_deref().unwrap_or("-"),
            expiry(c.refresh_expires_at.as_deref(), c.refresh_days_left),
            expiry(c.hard_expires_at.as_deref(), c.hard_days_left),
            if c.warnings.is_empty() {
                "-".to_owned()
            } else {
                format!("**WARNING**: {}", md(&c.warnings.join("; ")))
            }
        );
    }
    m
}

/// The lines of the terminal summary.
pub(super) fn text(rows: &[ConnectionRow]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(s, "connections (token expiry):");
    for c in rows {
        let _ = writeln!(
            s,
            "  {:<20} refresh token {} · hard {}",
            c.realm_id,
            expiry(c.refresh_expires_at.as_deref(), c.refresh_days_left),
            expiry(c.hard_expires_at.as_deref(), c.hard_days_left)
        );
        for w in &c.warnings {
            let _ = writeln!(s, "    WARNING: {w}");
        }
    }
    s
}
