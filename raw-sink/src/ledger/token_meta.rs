//! The non-secret facts kept beside a realm's refresh token (V8): company, app, expiries,
//! rotation and last success. Nothing here reads or returns the `refresh_token` column.

use time::OffsetDateTime;

use super::{Ledger, col};
use crate::error::SinkError;

/// One connected company as `auth status` shows it (no token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenMetaRow {
    /// The company (`realmId`).
    pub realm_id: String,
    /// Whether a refresh token is stored (never the token itself).
    pub has_token: bool,
    /// CompanyInfo's `CompanyName`, when known.
    pub company_name: Option<String>,
    /// The app (client id) the company was connected with.
    pub client_id: Option<String>,
    /// When `auth connect` stored the grant.
    pub connected_at: Option<OffsetDateTime>,
    /// When the stored refresh token last changed.
    pub rotated_at: Option<OffsetDateTime>,
    /// When the refresh token expires unless used.
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// The grant's hard expiry.
    pub hard_expires_at: Option<OffsetDateTime>,
    /// The last successful call for this company.
    pub last_success_at: Option<OffsetDateTime>,
    /// When the row last changed.
    pub updated_at: OffsetDateTime,
}

/// A grant's facts to record (seconds as Intuit states them; the database's clock adds them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenGrantNote {
    /// `x_refresh_token_expires_in`.
    pub refresh_expires_in: Option<i64>,
    /// The hard expiry in seconds.
    pub hard_expires_in: Option<i64>,
    /// The app's client id (replaces the stored one only for a new connection).
    pub client_id: Option<String>,
    /// The company's name (known when connecting).
    pub company_name: Option<String>,
    /// Whether this grant is a new connection (sets `connected_at`).
    pub connected: bool,
}

const META_COLUMNS: &str = "realm_id, refresh_token IS NOT NULL AS has_token, company_name, \
     client_id, connected_at, rotated_at, refresh_expires_at, hard_expires_at, last_success_at, \
     updated_at";

const NOTE_SQL: &str = "UPDATE backfill.oauth_tokens SET \
         refresh_expires_at = COALESCE(now() + make_interval(secs => $2::bigint), refresh_expires_at), \
         hard_expires_at = COALESCE(now() + make_interval(secs => $3::bigint), hard_expires_at), \
         client_id = CASE WHEN $6 THEN COALESCE($4, client_id) ELSE COALESCE(client_id, $4) END, \
         company_name = COALESCE($5, company_name), \
         connected_at = CASE WHEN $6 THEN now() ELSE connected_at END, \
         rotated_at = CASE WHEN $6 THEN now() ELSE rotated_at END, \
         last_success_at = CASE WHEN $6 THEN now() ELSE last_success_at END \
     WHERE realm_id = $1";

fn row_of(row: &tokio_postgres::Row) -> Result<TokenMetaRow, SinkError> {
    Ok(TokenMetaRow {
        realm_id: col(row, "realm_id")?,
        has_token: col(row, "has_token")?,
        company_name: col(row, "company_name")?,
        client_id: col(row, "client_id")?,
        connected_at: col(row, "connected_at")?,
        rotated_at: col(row, "rotated_at")?,
        refresh_expires_at: col(row, "refresh_expires_at")?,
        hard_expires_at: col(row, "hard_expires_at")?,
        last_success_at: col(row, "last_success_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

impl Ledger {
    /// Records a grant's facts on the stored row of `realm_id` (no row: nothing happens).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn token_note_grant(
        &self,
        realm_id: &str,
        note: &TokenGrantNote,
    ) -> Result<(), SinkError> {
        let client = self.client().await?;
        let ctx = || format!("recording the token facts of realm {realm_id}");
        client
            .execute(
                NOTE_SQL,
                &[
                    &realm_id,
                    &note.refresh_expires_in,
                    &note.hard_expires_in,
                    &note.client_id,
                    &note.company_name,
                    &note.connected,
                ],
            )
            .await
            .map_err(|e| SinkError::query(ctx(), e))?;
        Ok(())
    }

    /// Records a successful call for `realm_id` now.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn token_note_success(&self, realm_id: &str) -> Result<(), SinkError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE backfill.oauth_tokens SET last_success_at = now() WHERE realm_id = $1",
                &[&realm_id],
            )
            .await
            .map_err(|e| SinkError::query(format!("recording a success of realm {realm_id}"), e))?;
        Ok(())
    }

    /// The stored companies (one, or all with `None`), oldest realm id first, without tokens.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn token_meta(&self, realm_id: Option<&str>) -> Result<Vec<TokenMetaRow>, SinkError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {META_COLUMNS} FROM backfill.oauth_tokens \
             WHERE ($1::text IS NULL OR realm_id = $1) ORDER BY realm_id"
        );
        let rows = client
            .query(&sql, &[&realm_id])
            .await
            .map_err(|e| SinkError::query("listing the connected companies", e))?;
        rows.iter().map(row_of).collect()
    }

    /// Deletes the stored token and facts of `realm_id`; whether a row existed.
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn token_delete(&self, realm_id: &str) -> Result<bool, SinkError> {
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM backfill.oauth_tokens WHERE realm_id = $1",
                &[&realm_id],
            )
            .await
            .map_err(|e| SinkError::query(format!("removing the token of realm {realm_id}"), e))?;
        Ok(n > 0)
    }
}

/// A connected company's expiries as the report shows them ([`CONNECTIONS_SQL`]; no token).
///
/// [`CONNECTIONS_SQL`]: crate::volumetry::CONNECTIONS_SQL
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionExpiry {
    /// The company (`realmId`).
    pub realm_id: String,
    /// CompanyInfo's `CompanyName`, when known.
    pub company_name: Option<String>,
    /// The app (client id) it was connected with.
    pub client_id: Option<String>,
    /// Whether a refresh token is stored.
    pub has_token: bool,
    /// When the stored refresh token last changed.
    pub rotated_at: Option<OffsetDateTime>,
    /// The last successful API call.
    pub last_success_at: Option<OffsetDateTime>,
    /// When the refresh token expires unless used.
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// The grant's hard expiry.
    pub hard_expires_at: Option<OffsetDateTime>,
    /// Whole days to the rolling expiry (negative once past).
    pub refresh_days_left: Option<i64>,
    /// Whole days to the hard expiry (negative once past).
    pub hard_days_left: Option<i64>,
    /// Whether either expiry is under the warning period away (or past).
    pub expiring: bool,
}

impl Ledger {
    /// The expiries of the stored companies (one, or all with `None`), flagged when under
    /// `warn_days` away ([`CONNECTIONS_SQL`]).
    ///
    /// [`CONNECTIONS_SQL`]: crate::volumetry::CONNECTIONS_SQL
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn connection_expiries(
        &self,
        realm_id: Option<&str>,
        warn_days: i32,
    ) -> Result<Vec<ConnectionExpiry>, SinkError> {
        let client = self.client().await?;
        let rows = client
            .query(crate::volumetry::CONNECTIONS_SQL, &[&realm_id, &warn_days])
            .await
            .map_err(|e| SinkError::query("volumetry: connections", e))?;
        rows.iter()
            .map(|r| {
                Ok(ConnectionExpiry {
                    realm_id: col(r, "realm_id")?,
                    company_name: col(r, "company_name")?,
                    client_id: col(r, "client_id")?,
                    has_token: col(r, "has_token")?,
                    rotated_at: col(r, "rotated_at")?,
                    last_success_at: col(r, "last_success_at")?,
                    refresh_expires_at: col(r, "refresh_expires_at")?,
                    hard_expires_at: col(r, "hard_expires_at")?,
                    refresh_days_left: col(r, "refresh_days_left")?,
                    hard_days_left: col(r, "hard_days_left")?,
                    expiring: col(r, "expiring")?,
                })
            })
            .collect()
    }
}

/// The calendar month (UTC) of `now()`, as the ledger counts an app's metered calls: those
/// of pipeline runs, syncs and reconciles, `reports` runs and `check-books` runs.
pub(super) const MONTH_CALLS_SQL: &str = "SELECT COALESCE(sum(r.api_calls), 0)::bigint AS calls \
     FROM (SELECT realm_id, started_at, api_calls FROM backfill.runs \
           UNION ALL SELECT realm_id, started_at, api_calls FROM backfill.syncs \
           UNION ALL SELECT realm_id, started_at, api_calls FROM backfill.report_runs \
           UNION ALL SELECT realm_id, started_at, api_calls FROM backfill.book_checks) r \
     LEFT JOIN backfill.oauth_tokens t ON t.realm_id = r.realm_id \
     WHERE r.started_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') \
       AND (t.client_id IS NULL OR t.client_id = $1)";

impl Ledger {
    /// QBO API calls recorded this calendar month (UTC) by the runs (pipelines, `reports`,
    /// `check-books`), syncs and reconciles of every process on this ledger for the companies of app `client_id` (companies with no recorded app count for
    /// every app). A run's calls count once it has recorded them (at its end).
    ///
    /// # Errors
    /// [`SinkError::Pool`] / [`SinkError::Query`].
    pub async fn app_calls_this_month(&self, client_id: &str) -> Result<u64, SinkError> {
        let client = self.client().await?;
        let row = client
            .query_one(MONTH_CALLS_SQL, &[&client_id])
            .await
            .map_err(|e| SinkError::query("counting this month's API calls", e))?;
        let n: i64 = col(&row, "calls")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
