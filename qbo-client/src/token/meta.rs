//! The non-secret facts kept beside a stored refresh token: which company, which app, when it
//! last rotated, when it expires (rolling and hard), the last successful call. `auth status`
//! reads them; nothing here holds a token.
//!
//! The file store keeps them in a sidecar `<file>.meta.json` (mode 0600, replaced atomically),
//! so the token file keeps its `{"<realm>": "<token>"}` shape.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::TokenStoreError;

/// What the client or the connect flow learnt about a realm's grant, for [`TokenStore::note`].
///
/// [`TokenStore::note`]: super::TokenStore::note
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenNote {
    /// A refresh succeeded (the rotated token, if any, is saved already). Not a successful
    /// call: `last_success_at` is set by [`TokenNote::Succeeded`] only.
    Refreshed {
        /// `x_refresh_token_expires_in` of the answer.
        refresh_expires_in: Option<u64>,
        /// The hard expiry of the answer, in seconds.
        hard_expires_in: Option<u64>,
        /// The app that refreshed.
        client_id: String,
        /// Whether the answer carried a new refresh token.
        rotated: bool,
    },
    /// The company was connected (its first refresh token is saved already).
    Connected {
        /// CompanyInfo's `CompanyName`.
        company_name: Option<String>,
        /// The app it was connected with.
        client_id: String,
        /// `x_refresh_token_expires_in` of the code exchange.
        refresh_expires_in: Option<u64>,
        /// The hard expiry of the code exchange, in seconds.
        hard_expires_in: Option<u64>,
    },
    /// A call for the company succeeded.
    Succeeded,
}

/// The facts of one stored realm (no token).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenMetadata {
    /// The company (`realmId`).
    pub realm_id: String,
    /// Whether a refresh token is stored.
    #[serde(default)]
    pub has_token: bool,
    /// CompanyInfo's `CompanyName`.
    #[serde(default)]
    pub company_name: Option<String>,
    /// The app (client id) the company was connected with.
    #[serde(default)]
    pub client_id: Option<String>,
    /// When it was connected.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub connected_at: Option<OffsetDateTime>,
    /// When the stored refresh token last changed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub rotated_at: Option<OffsetDateTime>,
    /// When the refresh token expires unless used (rolling, ~100 days).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub refresh_expires_at: Option<OffsetDateTime>,
    /// The grant's hard expiry (Intuit's 5-year cap).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub hard_expires_at: Option<OffsetDateTime>,
    /// The last successful call.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<OffsetDateTime>,
}

impl TokenMetadata {
    /// Empty facts of `realm_id`.
    #[must_use]
    pub fn new(realm_id: impl Into<String>) -> Self {
        Self {
            realm_id: realm_id.into(),
            ..Self::default()
        }
    }

    /// The earlier of the two expiries, if either is known.
    #[must_use]
    pub fn next_expiry(&self) -> Option<OffsetDateTime> {
        match (self.refresh_expires_at, self.hard_expires_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Applies `note` as of `now`.
    pub fn apply(&mut self, note: &TokenNote, now: OffsetDateTime) {
        let after = |secs: Option<u64>| {
            secs.and_then(|s| i64::try_from(s).ok())
                .map(|s| now + time::Duration::seconds(s))
        };
        match note {
            TokenNote::Refreshed {
                refresh_expires_in,
                hard_expires_in,
                client_id,
                rotated,
            } => {
                if *rotated {
                    self.rotated_at = Some(now);
                }
                self.refresh_expires_at = after(*refresh_expires_in).or(self.refresh_expires_at);
                self.hard_expires_at = after(*hard_expires_in).or(self.hard_expires_at);
                self.client_id.get_or_insert_with(|| client_id.clone());
            }
            TokenNote::Connected {
                company_name,
                client_id,
                refresh_expires_in,
                hard_expires_in,
            } => {
                self.company_name = company_name.clone().or(self.company_name.take());
                self.client_id = Some(client_id.clone());
                self.connected_at = Some(now);
                self.rotated_at = Some(now);
                self.refresh_expires_at = after(*refresh_expires_in);
                self.hard_expires_at = after(*hard_expires_in);
                self.last_success_at = Some(now);
            }
            TokenNote::Succeeded => self.last_success_at = Some(now),
        }
    }
}

/// The sidecar file of a token file.
pub(super) fn sidecar(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "tokens".into());
    name.push(".meta.json");
    path.with_file_name(name)
}

pub(super) fn read_meta(path: &Path) -> Result<BTreeMap<String, TokenMetadata>, TokenStoreError> {
    let file = sidecar(path);
    match std::fs::read_to_string(&file) {
        Ok(t) if t.trim().is_empty() => Ok(BTreeMap::new()),
        Ok(t) => serde_json::from_str(&t).map_err(|_| TokenStoreError::Corrupt { path: file }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(TokenStoreError::Io { path: file, source }),
    }
}

pub(super) fn write_meta(
    path: &Path,
    map: &BTreeMap<String, TokenMetadata>,
) -> Result<(), TokenStoreError> {
    let file = sidecar(path);
    let body = serde_json::to_vec_pretty(map)
        .map_err(|_| TokenStoreError::Corrupt { path: file.clone() })?;
    super::store::write_private(&file, &body)
}

/// The facts of the realms of `tokens` (and of the sidecar), one or all.
pub(super) fn listed(
    tokens: &HashMap<String, String>,
    meta: &BTreeMap<String, TokenMetadata>,
    realm_id: Option<&str>,
) -> Vec<TokenMetadata> {
    let mut realms: Vec<&String> = tokens.keys().chain(meta.keys()).collect();
    realms.sort();
    realms.dedup();
    realms
        .into_iter()
        .filter(|r| realm_id.is_none_or(|x| x == r.as_str()))
        .map(|r| {
            let mut m = meta
                .get(r)
                .cloned()
                .unwrap_or_else(|| TokenMetadata::new(r));
            m.realm_id.clone_from(r);
            m.has_token = tokens.contains_key(r);
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn notes_set_expiries_from_now_and_keep_what_they_do_not_say() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut m = TokenMetadata::new("r");
        m.apply(
            &TokenNote::Connected {
                company_name: Some("Acme".into()),
                client_id: "app".into(),
                refresh_expires_in: Some(86_400),
                hard_expires_in: Some(2 * 86_400),
            },
            now,
        );
        assert_eq!(m.refresh_expires_at, Some(datetime!(2026-01-02 00:00 UTC)));
        assert_eq!(m.next_expiry(), Some(datetime!(2026-01-02 00:00 UTC)));
        assert_eq!(m.connected_at, Some(now));
        let later = datetime!(2026-01-01 12:00 UTC);
        m.apply(
            &TokenNote::Refreshed {
                refresh_expires_in: Some(86_400),
                hard_expires_in: None,
                client_id: "other".into(),
                rotated: false,
            },
            later,
        );
        assert_eq!(m.refresh_expires_at, Some(datetime!(2026-01-02 12:00 UTC)));
        assert_eq!(m.hard_expires_at, Some(datetime!(2026-01-03 00:00 UTC)));
        assert_eq!(m.client_id.as_deref(), Some("app"));
        assert_eq!(m.company_name.as_deref(), Some("Acme"));
        // A refresh is not a successful API call: the connection's stays the last.
        assert_eq!(m.last_success_at, Some(now));
        m.apply(&TokenNote::Succeeded, later);
        assert_eq!(m.last_success_at, Some(later));
    }

    #[test]
    fn the_sidecar_sits_beside_the_token_file() {
        assert_eq!(
            sidecar(Path::new("/var/lib/qb/tokens.json")),
            PathBuf::from("/var/lib/qb/tokens.json.meta.json")
        );
    }
}
