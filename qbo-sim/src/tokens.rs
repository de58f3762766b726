//! OAuth token bookkeeping: refresh-token chains per realm, access tokens, rotation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::Rng;

use crate::config::Rotation;

/// Refresh tokens live 100 days after their last use; QBO reports ~101 days when fresh.
pub(crate) const REFRESH_TTL_SECS: u64 = 8_726_400;
/// Intuit's hard maximum lifetime of a refresh-token chain: 5 years.
pub(crate) const REFRESH_HARD_TTL_SECS: u64 = 5 * 365 * 86_400;

#[derive(Debug, Clone)]
struct RefreshToken {
    realm: String,
    issued: Instant,
    last_used: Instant,
    /// When an older token stops working after rotation; `None` while it is the newest.
    dies_at: Option<Instant>,
    revoked: bool,
}

/// An authorization code handed out by the consent page: single use, 10 minutes.
#[derive(Debug, Clone)]
struct AuthCode {
    realm: String,
    redirect_uri: String,
    client_id: String,
    expires: Instant,
    used: bool,
}

/// How long an authorization code may be exchanged (Intuit: a few minutes).
const CODE_TTL: Duration = Duration::from_secs(600);

/// Why an authorization code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CodeRefusal {
    Unknown,
    Used,
    Expired,
    RedirectMismatch,
    OtherClient,
}

#[derive(Debug, Clone)]
struct AccessToken {
    realm: String,
    expires: Instant,
}

/// Result of a successful refresh.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
    pub(crate) expires_in: u64,
    pub(crate) refresh_expires_in: u64,
    pub(crate) hard_expires_in: u64,
    pub(crate) rotated: bool,
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshRefusal {
    Unknown,
    Superseded,
    Revoked,
    Expired,
    /// The token belongs to another app than the credentials presented.
    OtherClient,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessRefusal {
    Unknown,
    Expired,
}

/// How refresh and access tokens behave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenPolicy {
    pub(crate) access_ttl: Duration,
    pub(crate) rotation: Rotation,
    /// How long a superseded refresh token keeps working; `None` = it dies at once.
    pub(crate) grace: Option<Duration>,
}

/// All tokens of a simulator.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    refresh: HashMap<String, RefreshToken>,
    access: HashMap<String, AccessToken>,
    /// Newest refresh token per realm.
    current: HashMap<String, String>,
    chain_start: HashMap<String, Instant>,
    codes: HashMap<String, AuthCode>,
    /// The app each company was connected with, when not the primary one's default (a
    /// company's tokens refresh only with its app's credentials).
    realm_app: HashMap<String, String>,
}

fn random_token(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf);
    format!("{prefix}{body}")
}

fn new_refresh_value() -> String {
    // Real ones look like "AB11…" and are ~50 characters.
    let mut s = random_token("AB11", 36);
    s.truncate(50);
    s
}

fn new_access_value() -> String {
    // Real access tokens are long opaque JWE strings.
    format!(
        "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..{}.{}",
        random_token("", 24),
        random_token("", 600)
    )
}

impl Tokens {
    /// Installs the initial refresh token of a realm.
    pub(crate) fn seed_realm(&mut self, realm: &str, refresh_token: &str, now: Instant) {
        self.refresh.insert(
            refresh_token.to_string(),
            RefreshToken {
                realm: realm.to_string(),
                issued: now,
                last_used: now,
                dies_at: None,
                revoked: false,
            },
        );
        self.current
            .insert(realm.to_string(), refresh_token.to_string());
        self.chain_start.insert(realm.to_string(), now);
    }

    /// Company `realm` is connected with app `client_id`: its refresh tokens refresh only with
    /// that app's credentials.
    pub(crate) fn connect_app(&mut self, realm: &str, client_id: &str) {
        self.realm_app
            .insert(realm.to_string(), client_id.to_string());
    }

    /// The newest refresh token of a realm.
    pub(crate) fn current(&self, realm: &str) -> Option<String> {
        self.current.get(realm).cloned()
    }

    /// Exchanges a refresh token for an access token (and maybe a new refresh token), for the
    /// app `client_id` authenticated as (a company connected with another app: refused).
    pub(crate) fn refresh(
        &mut self,
        presented: &str,
        client_id: &str,
        policy: TokenPolicy,
        now: Instant,
    ) -> Result<Grant, RefreshRefusal> {
        let tok = self
            .refresh
            .get(presented)
            .ok_or(RefreshRefusal::Unknown)?
            .clone();
        if tok.revoked {
            return Err(RefreshRefusal::Revoked);
        }
        if self
            .realm_app
            .get(&tok.realm)
            .is_some_and(|app| app != client_id)
        {
            return Err(RefreshRefusal::OtherClient);
        }
        if tok.dies_at.is_some_and(|d| now >= d) {
            return Err(RefreshRefusal::Superseded);
        }
        if now.saturating_duration_since(tok.last_used) >= Duration::from_secs(REFRESH_TTL_SECS) {
            return Err(RefreshRefusal::Expired);
        }
        let realm = tok.realm.clone();
        let current_value = self
            .current
            .get(&realm)
            .cloned()
            .unwrap_or_else(|| presented.to_string());
        let current_issued = self.refresh.get(&current_value).map_or(now, |t| t.issued);
        let rotate = match policy.rotation {
            Rotation::Never => false,
            Rotation::EveryRefresh => true,
            Rotation::Every(d) => now.saturating_duration_since(current_issued) >= d,
        };
        let returned = if rotate {
            let fresh = new_refresh_value();
            let dies_at = now + policy.grace.unwrap_or(Duration::ZERO);
            for (value, t) in &mut self.refresh {
                if t.realm == realm && t.dies_at.is_none() && *value != fresh {
                    t.dies_at = Some(dies_at);
                }
            }
            self.refresh.insert(
                fresh.clone(),
                RefreshToken {
                    realm: realm.clone(),
                    issued: now,
                    last_used: now,
                    dies_at: None,
                    revoked: false,
                },
            );
            self.current.insert(realm.clone(), fresh.clone());
            fresh
        } else {
            if let Some(t) = self.refresh.get_mut(&current_value) {
                t.last_used = now;
            }
            current_value
        };
        if let Some(t) = self.refresh.get_mut(presented) {
            t.last_used = now;
        }
        Ok(self.grant(&realm, returned, rotate, policy, now))
    }

    /// A new access token for `realm` and the grant that hands it out with `refresh_token`.
    fn grant(
        &mut self,
        realm: &str,
        refresh_token: String,
        rotated: bool,
        policy: TokenPolicy,
        now: Instant,
    ) -> Grant {
        let access = new_access_value();
        self.access.retain(|_, a| a.expires > now);
        self.access.insert(
            access.clone(),
            AccessToken {
                realm: realm.to_string(),
                expires: now + policy.access_ttl,
            },
        );
        let chain_age = self
            .chain_start
            .get(realm)
            .map_or(0, |s| now.saturating_duration_since(*s).as_secs());
        Grant {
            access_token: access,
            refresh_token,
            expires_in: policy.access_ttl.as_secs(),
            refresh_expires_in: REFRESH_TTL_SECS,
            hard_expires_in: REFRESH_HARD_TTL_SECS.saturating_sub(chain_age),
            rotated,
        }
    }

    /// Hands out an authorization code for `realm` (the consent page's approval).
    pub(crate) fn issue_code(
        &mut self,
        realm: &str,
        redirect_uri: &str,
        client_id: &str,
        now: Instant,
    ) -> String {
        self.codes.retain(|_, c| c.expires > now && !c.used);
        let code = random_token("AB11", 24);
        self.codes.insert(
            code.clone(),
            AuthCode {
                realm: realm.to_string(),
                redirect_uri: redirect_uri.to_string(),
                client_id: client_id.to_string(),
                expires: now + CODE_TTL,
                used: false,
            },
        );
        code
    }

    /// Exchanges an authorization code (`grant_type=authorization_code`): the redirect URI must
    /// be the one the code was issued for; the code works once. The realm gets a new refresh
    /// chain (a new 5-year hard expiry); its earlier tokens are superseded at once.
    pub(crate) fn redeem_code(
        &mut self,
        code: &str,
        redirect_uri: &str,
        client_id: &str,
        policy: TokenPolicy,
        now: Instant,
    ) -> Result<Grant, CodeRefusal> {
        let c = self.codes.get_mut(code).ok_or(CodeRefusal::Unknown)?;
        if c.used {
            return Err(CodeRefusal::Used);
        }
        if now >= c.expires {
            return Err(CodeRefusal::Expired);
        }
        if c.client_id != client_id {
            return Err(CodeRefusal::OtherClient);
        }
        if c.redirect_uri != redirect_uri {
            return Err(CodeRefusal::RedirectMismatch);
        }
        c.used = true;
        let realm = c.realm.clone();
        self.realm_app.insert(realm.clone(), client_id.to_string());
        for t in self.refresh.values_mut() {
            if t.realm == realm && t.dies_at.is_none() {
                t.dies_at = Some(now);
            }
        }
        let fresh = new_refresh_value();
        self.seed_realm(&realm, &fresh, now);
        Ok(self.grant(&realm, fresh, true, policy, now))
    }

    /// Revokes the grant a token (refresh or access) belongs to, for the app `client_id`
    /// authenticated as: every refresh token of its realm then gives `invalid_grant` and its
    /// access tokens stop working. Returns the realm, `Ok(None)` for a token the simulator
    /// never issued, `Err(realm)` for a grant given to another app (RFC 7009: the token was
    /// not issued to the client asking; nothing is revoked).
    pub(crate) fn revoke(
        &mut self,
        token: &str,
        client_id: &str,
    ) -> Result<Option<String>, String> {
        let Some(realm) = self
            .refresh
            .get(token)
            .map(|t| t.realm.clone())
            .or_else(|| self.access.get(token).map(|a| a.realm.clone()))
        else {
            return Ok(None);
        };
        if self
            .realm_app
            .get(&realm)
            .is_some_and(|app| app != client_id)
        {
            return Err(realm);
        }
        for t in self.refresh.values_mut() {
            if t.realm == realm {
                t.revoked = true;
            }
        }
        self.access.retain(|_, a| a.realm != realm);
        Ok(Some(realm))
    }

    /// The realm an access token is good for.
    pub(crate) fn check_access(&self, token: &str, now: Instant) -> Result<String, AccessRefusal> {
        let t = self.access.get(token).ok_or(AccessRefusal::Unknown)?;
        if now >= t.expires {
            return Err(AccessRefusal::Expired);
        }
        Ok(t.realm.clone())
    }

    /// Makes one access token expired.
    pub(crate) fn expire_access(&mut self, token: &str, now: Instant) {
        if let Some(t) = self.access.get_mut(token) {
            t.expires = now;
        }
    }

    /// Makes every access token expired.
    pub(crate) fn expire_all_access(&mut self, now: Instant) {
        for t in self.access.values_mut() {
            t.expires = now;
        }
    }

    /// Revokes every refresh token; refreshing then gives `invalid_grant`.
    pub(crate) fn revoke_all_refresh(&mut self) {
        for t in self.refresh.values_mut() {
            t.revoked = true;
        }
    }

    /// Mints an access token directly (tests that skip OAuth).
    pub(crate) fn mint_access(&mut self, realm: &str, ttl: Duration, now: Instant) -> String {
        let access = new_access_value();
        self.access.insert(
            access.clone(),
            AccessToken {
                realm: realm.to_string(),
                expires: now + ttl,
            },
        );
        access
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(rotation: Rotation, grace: Option<Duration>) -> TokenPolicy {
        TokenPolicy {
            access_ttl: Duration::from_secs(3600),
            rotation,
            grace,
        }
    }

    #[test]
    fn never_rotates() {
        let mut t = Tokens::default();
        let now = Instant::now();
        t.seed_realm("r", "RT0", now);
        let g = t
            .refresh("RT0", "app", policy(Rotation::Never, None), now)
            .unwrap();
        assert_eq!(g.refresh_token, "RT0");
        assert!(!g.rotated);
        let g2 = t
            .refresh("RT0", "app", policy(Rotation::Never, None), now)
            .unwrap();
        assert_eq!(g2.refresh_token, "RT0");
        assert_ne!(g.access_token, g2.access_token);
        assert_eq!(t.check_access(&g.access_token, now).unwrap(), "r");
        assert_eq!(
            t.check_access(&g.access_token, now + Duration::from_secs(3600)),
            Err(AccessRefusal::Expired)
        );
        assert_eq!(t.check_access("nope", now), Err(AccessRefusal::Unknown));
    }

    #[test]
    fn every_refresh_kills_old_at_once() {
        let mut t = Tokens::default();
        let now = Instant::now();
        t.seed_realm("r", "RT0", now);
        let g = t
            .refresh("RT0", "app", policy(Rotation::EveryRefresh, None), now)
            .unwrap();
        assert_ne!(g.refresh_token, "RT0");
        assert_eq!(t.current("r").unwrap(), g.refresh_token);
        assert_eq!(
            t.refresh("RT0", "app", policy(Rotation::EveryRefresh, None), now)
                .unwrap_err(),
            RefreshRefusal::Superseded
        );
        assert!(
            t.refresh(
                &g.refresh_token,
                "app",
                policy(Rotation::EveryRefresh, None),
                now
            )
            .is_ok()
        );
    }

    #[test]
    fn grace_keeps_old_token_alive_for_a_while() {
        let mut t = Tokens::default();
        let now = Instant::now();
        let p = policy(Rotation::EveryRefresh, Some(Duration::from_secs(60)));
        t.seed_realm("r", "RT0", now);
        let g = t.refresh("RT0", "app", p, now).unwrap();
        let later = now + Duration::from_secs(30);
        // Old token still works during the grace period (and rotation goes on).
        assert!(t.refresh("RT0", "app", p, later).is_ok());
        let dead = now + Duration::from_secs(61);
        assert_eq!(
            t.refresh("RT0", "app", p, dead).unwrap_err(),
            RefreshRefusal::Superseded
        );
        let _ = g;
    }

    #[test]
    fn every_n_seconds() {
        let mut t = Tokens::default();
        let now = Instant::now();
        let p = policy(Rotation::Every(Duration::from_secs(100)), None);
        t.seed_realm("r", "RT0", now);
        assert_eq!(
            t.refresh("RT0", "app", p, now + Duration::from_secs(10))
                .unwrap()
                .refresh_token,
            "RT0"
        );
        let g = t
            .refresh("RT0", "app", p, now + Duration::from_secs(100))
            .unwrap();
        assert!(g.rotated);
        assert_eq!(
            t.refresh("RT0", "app", p, now + Duration::from_secs(101))
                .unwrap_err(),
            RefreshRefusal::Superseded
        );
        assert_eq!(
            t.refresh(&g.refresh_token, "app", p, now + Duration::from_secs(150))
                .unwrap()
                .refresh_token,
            g.refresh_token
        );
    }

    #[test]
    fn codes_work_once_for_their_redirect_and_start_a_new_chain() {
        let mut t = Tokens::default();
        let now = Instant::now();
        let p = policy(Rotation::Never, None);
        t.seed_realm("r", "RT0", now);
        let code = t.issue_code("r", "http://localhost:1/cb", "app", now);
        assert_eq!(
            t.redeem_code(&code, "http://localhost:2/cb", "app", p, now)
                .unwrap_err(),
            CodeRefusal::RedirectMismatch
        );
        assert_eq!(
            t.redeem_code(&code, "http://localhost:1/cb", "other", p, now)
                .unwrap_err(),
            CodeRefusal::OtherClient
        );
        let g = t
            .redeem_code(&code, "http://localhost:1/cb", "app", p, now)
            .unwrap();
        assert_eq!(t.current("r").unwrap(), g.refresh_token);
        assert_eq!(g.hard_expires_in, REFRESH_HARD_TTL_SECS);
        assert_eq!(t.check_access(&g.access_token, now).unwrap(), "r");
        assert_eq!(
            t.redeem_code(&code, "http://localhost:1/cb", "app", p, now)
                .unwrap_err(),
            CodeRefusal::Used
        );
        assert_eq!(
            t.refresh("RT0", "app", p, now).unwrap_err(),
            RefreshRefusal::Superseded
        );
        let late = t.issue_code("r", "u", "app", now);
        assert_eq!(
            t.redeem_code(&late, "u", "app", p, now + CODE_TTL)
                .unwrap_err(),
            CodeRefusal::Expired
        );
        assert_eq!(
            t.redeem_code("nope", "u", "app", p, now).unwrap_err(),
            CodeRefusal::Unknown
        );
    }

    #[test]
    fn revoking_a_token_ends_its_realms_grant_only() {
        let mut t = Tokens::default();
        let now = Instant::now();
        let p = policy(Rotation::Never, None);
        t.seed_realm("a", "RTA", now);
        t.seed_realm("b", "RTB", now);
        let ga = t.refresh("RTA", "app", p, now).unwrap();
        assert_eq!(t.revoke("RTA", "app"), Ok(Some("a".to_owned())));
        assert_eq!(
            t.refresh("RTA", "app", p, now).unwrap_err(),
            RefreshRefusal::Revoked
        );
        assert_eq!(
            t.check_access(&ga.access_token, now),
            Err(AccessRefusal::Unknown)
        );
        assert!(t.refresh("RTB", "app", p, now).is_ok());
        let gb = t.refresh("RTB", "app", p, now).unwrap();
        assert_eq!(t.revoke(&gb.access_token, "app"), Ok(Some("b".to_owned())));
        assert_eq!(
            t.refresh("RTB", "app", p, now).unwrap_err(),
            RefreshRefusal::Revoked
        );
        assert_eq!(t.revoke("never-issued", "app"), Ok(None));
    }

    #[test]
    fn a_grant_of_another_app_is_not_revoked_by_this_one() {
        let now = Instant::now();
        let p = policy(Rotation::Never, None);
        let mut t = Tokens::default();
        t.seed_realm("r", "RT0", now);
        t.connect_app("r", "other");
        assert_eq!(t.revoke("RT0", "app"), Err("r".to_owned()));
        assert!(t.refresh("RT0", "other", p, now).is_ok());
        assert_eq!(t.revoke("RT0", "other"), Ok(Some("r".to_owned())));
        assert_eq!(
            t.refresh("RT0", "other", p, now).unwrap_err(),
            RefreshRefusal::Revoked
        );
    }

    #[test]
    fn a_company_of_another_app_refreshes_only_with_its_credentials() {
        let now = Instant::now();
        let mut t = Tokens::default();
        t.seed_realm("r", "RT0", now);
        t.connect_app("r", "appB");
        let p = policy(Rotation::Never, None);
        assert_eq!(
            t.refresh("RT0", "appA", p, now).unwrap_err(),
            RefreshRefusal::OtherClient
        );
        assert!(t.refresh("RT0", "appB", p, now).is_ok());
    }

    #[test]
    fn revoke_and_expire() {
        let mut t = Tokens::default();
        let now = Instant::now();
        t.seed_realm("r", "RT0", now);
        let g = t
            .refresh("RT0", "app", policy(Rotation::Never, None), now)
            .unwrap();
        t.expire_all_access(now);
        assert_eq!(
            t.check_access(&g.access_token, now),
            Err(AccessRefusal::Expired)
        );
        t.revoke_all_refresh();
        assert_eq!(
            t.refresh("RT0", "app", policy(Rotation::Never, None), now)
                .unwrap_err(),
            RefreshRefusal::Revoked
        );
        assert_eq!(
            t.refresh("zzz", "app", policy(Rotation::Never, None), now)
                .unwrap_err(),
            RefreshRefusal::Unknown
        );
    }
}
