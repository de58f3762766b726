//! Connecting a company: the authorization-code flow of OAuth 2.0 as Intuit runs it.
//!
//! [`OAuthApp::authorization`] builds the consent page's URL (the accounting scope and a
//! random `state`); the person approving picks a company, and Intuit redirects to the app's
//! redirect URI with `code`, `state` and `realmId`. [`Authorization::callback`] checks that
//! redirect (the `state` must be the one sent: anything else may be a forged request),
//! [`OAuthApp::exchange_code`] trades the code for the first refresh token, and
//! [`OAuthApp::revoke`] ends a grant. Nothing here prints a token, a code or the secret.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use rand::Rng as _;
use reqwest::Url;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};

use super::endpoint::{App, Grant, Once, post_grant};
use crate::config::{ConfigError, Environment, check_url, parse_url, secret_var};
use crate::error::{AuthError, Endpoint, QboError};
use crate::http::intuit_tid_of;

/// Intuit's consent page (the same for sandbox and production).
pub const AUTHORIZE_URL: &str = "https://appcenter.intuit.com/connect/oauth2";
/// Intuit's revoke endpoint.
pub const REVOKE_URL: &str = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke";
/// The OAuth scope of the QuickBooks Online accounting API (all this crate needs).
pub const ACCOUNTING_SCOPE: &str = "com.intuit.quickbooks.accounting";

/// One app's OAuth settings: what connecting, and disconnecting, a company needs. The secret
/// never prints.
#[derive(Clone)]
pub struct OAuthApp {
    http: reqwest::Client,
    client_id: String,
    client_secret: SecretString,
    token_url: Url,
    authorize_url: Url,
    revoke_url: Url,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("token_url", &self.token_url.as_str())
            .field("authorize_url", &self.authorize_url.as_str())
            .field("revoke_url", &self.revoke_url.as_str())
            .finish()
    }
}

/// The tokens a code exchange granted. Debug shows only the lifetimes.
#[derive(Clone)]
pub struct ConnectedTokens {
    /// The first access token (valid `expires_in` seconds).
    pub access_token: SecretString,
    /// The first refresh token of the grant: store it before anything else.
    pub refresh_token: SecretString,
    /// Seconds the access token lives.
    pub expires_in: u64,
    /// `x_refresh_token_expires_in`: seconds until the refresh token expires unless used.
    pub refresh_expires_in: Option<u64>,
    /// The grant's hard expiry in seconds (`x_refresh_token_hard_expires_in`, or
    /// `x_refresh_token_lifetime_expires_in` as some of Intuit's clients name it).
    pub hard_expires_in: Option<u64>,
}

impl fmt::Debug for ConnectedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectedTokens")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &"[REDACTED]")
            .field("expires_in", &self.expires_in)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("hard_expires_in", &self.hard_expires_in)
            .finish()
    }
}

/// A consent page opened: its URL and what the redirect must carry back.
#[derive(Clone)]
pub struct Authorization {
    url: Url,
    state: String,
    redirect_uri: String,
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorization")
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// What an approved redirect carried. Debug hides the code.
#[derive(Clone)]
pub struct Callback {
    /// The authorization code (single use, minutes).
    pub code: SecretString,
    /// The company the person picked.
    pub realm_id: String,
}

impl fmt::Debug for Callback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callback")
            .field("code", &"[REDACTED]")
            .field("realm_id", &self.realm_id)
            .finish()
    }
}

/// A random `state`: 24 bytes of the thread's CSPRNG, base64url.
fn random_state() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Authorization {
    /// The consent page's URL, to open in a browser.
    #[must_use]
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The `state` sent (and expected back).
    #[must_use]
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The redirect URI the page was opened with (the code exchange must send the same).
    #[must_use]
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Checks the URL Intuit redirected to (the whole URL, or just its query) and returns the
    /// code and the company.
    ///
    /// # Errors
    /// [`AuthError::ConsentDenied`] when the redirect carries `error` (the person clicked
    /// Cancel: `access_denied`), [`AuthError::StateMismatch`] when its `state` is not the one
    /// sent (the redirect is not the answer to this request), [`AuthError::CallbackIncomplete`]
    /// when `code` or `realmId` is missing.
    pub fn callback(&self, redirected: &str) -> Result<Callback, AuthError> {
        let text = redirected.trim();
        let query = text.split_once('?').map_or(text, |(_, q)| q);
        let query = query.split_once('#').map_or(query, |(q, _)| q);
        let pairs = url_form(query);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        // The state is checked first: a forged redirect's "error" is not the person's answer.
        if get("state") != Some(self.state.as_str()) {
            return Err(AuthError::StateMismatch);
        }
        if let Some(error) = get("error") {
            return Err(AuthError::ConsentDenied {
                error: error.to_owned(),
                description: get("error_description").map(str::to_owned),
            });
        }
        let code = get("code").ok_or(AuthError::CallbackIncomplete { missing: "code" })?;
        let realm_id =
            get("realmId").ok_or(AuthError::CallbackIncomplete { missing: "realmId" })?;
        crate::config::validate_realm(realm_id).map_err(|_| AuthError::CallbackIncomplete {
            missing: "a valid realmId",
        })?;
        Ok(Callback {
            code: SecretString::from(code.to_owned()),
            realm_id: realm_id.to_owned(),
        })
    }
}

/// The pairs of an `application/x-www-form-urlencoded` query.
fn url_form(query: &str) -> Vec<(String, String)> {
    let Ok(mut u) = Url::parse("http://x/") else {
        return Vec::new();
    };
    u.set_query(Some(query));
    u.query_pairs().into_owned().collect()
}

impl OAuthApp {
    /// An app with Intuit's URLs (the token endpoint of `environment`; the consent page and the
    /// revoke endpoint are the same for both environments).
    ///
    /// # Errors
    /// [`QboError::HttpClient`] if the HTTP client cannot be created.
    pub fn new(
        environment: Environment,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Result<Self, QboError> {
        let parse = |what: &str, u: &str| parse_url(what, u, false).map_err(QboError::Config);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(QboError::HttpClient)?;
        Ok(Self {
            http,
            client_id: client_id.into(),
            client_secret,
            token_url: parse("token_url", environment.token_url())?,
            authorize_url: parse("authorize_url", AUTHORIZE_URL)?,
            revoke_url: parse("revoke_url", REVOKE_URL)?,
        })
    }

    /// Reads an app through `lookup`: `QBO_CLIENT_ID`, `QBO_CLIENT_SECRET` (each or its
    /// `_FILE`), `QBO_ENV`, and the optional overrides `QBO_TOKEN_URL`, `QBO_AUTH_URL` (the
    /// consent page), `QBO_REVOKE_URL` and `QBO_ALLOW_INSECURE_HTTP`, as
    /// [`QboConfig::from_lookup`](crate::QboConfig::from_lookup) reads them. No refresh token
    /// or realm is needed.
    ///
    /// # Errors
    /// [`QboError::Config`] for a missing or conflicting variable or a bad URL,
    /// [`QboError::HttpClient`] if the HTTP client cannot be created.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, QboError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let client_id = secret_var(&get, "QBO_CLIENT_ID")?;
        let client_secret = secret_var(&get, "QBO_CLIENT_SECRET")?;
        let environment = get("QBO_ENV")
            .ok_or_else(|| ConfigError::Missing {
                var: "QBO_ENV".into(),
            })?
            .parse::<Environment>()?;
        let insecure = get("QBO_ALLOW_INSECURE_HTTP").is_some_and(|v| {
            matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
        });
        let mut app = Self::new(
            environment,
            client_id.trim(),
            SecretString::from(client_secret),
        )?;
        for (var, slot) in [
            ("QBO_TOKEN_URL", &mut app.token_url),
            ("QBO_AUTH_URL", &mut app.authorize_url),
            ("QBO_REVOKE_URL", &mut app.revoke_url),
        ] {
            if let Some(v) = get(var) {
                *slot = parse_url(var, v.trim(), insecure)?;
            }
        }
        Ok(app)
    }

    /// Replaces the consent page's URL (a simulator, a proxy).
    ///
    /// # Errors
    /// [`QboError::Config`] for plain http to a host other than loopback.
    pub fn with_authorize_url(mut self, url: Url) -> Result<Self, QboError> {
        check_url("authorize_url", &url, false)?;
        self.authorize_url = url;
        Ok(self)
    }

    /// Replaces the token endpoint's URL.
    ///
    /// # Errors
    /// As [`OAuthApp::with_authorize_url`].
    pub fn with_token_url(mut self, url: Url) -> Result<Self, QboError> {
        check_url("token_url", &url, false)?;
        self.token_url = url;
        Ok(self)
    }

    /// Replaces the revoke endpoint's URL.
    ///
    /// # Errors
    /// As [`OAuthApp::with_authorize_url`].
    pub fn with_revoke_url(mut self, url: Url) -> Result<Self, QboError> {
        check_url("revoke_url", &url, false)?;
        self.revoke_url = url;
        Ok(self)
    }

    /// The app's client id (not secret).
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A consent page for `redirect_uri` (which must be registered in the app, exactly), with
    /// the accounting scope and a new random `state`.
    #[must_use]
    pub fn authorization(&self, redirect_uri: &str) -> Authorization {
        let state = random_state();
        let mut url = self.authorize_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("response_type", "code")
            .append_pair("scope", ACCOUNTING_SCOPE)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &state);
        Authorization {
            url,
            state,
            redirect_uri: redirect_uri.to_owned(),
        }
    }

    /// Exchanges the code of an approved redirect for the grant's first tokens. One attempt:
    /// a code works once, so a retry after an unclear failure could only be refused.
    ///
    /// # Errors
    /// [`AuthError::CodeRejected`] (`invalid_grant`: the code expired, was used, or the
    /// redirect URI differs), [`AuthError::InvalidClient`], other [`QboError`]s for network
    /// and server failures.
    pub async fn exchange_code(
        &self,
        code: &SecretString,
        redirect_uri: &str,
    ) -> Result<ConnectedTokens, QboError> {
        let app = App {
            http: &self.http,
            token_url: &self.token_url,
            client_id: &self.client_id,
            client_secret: &self.client_secret,
        };
        match post_grant(app, Grant::Code { code, redirect_uri }).await {
            Ok(g) => {
                let Some(refresh_token) = g.refresh_token else {
                    return Err(QboError::Malformed {
                        endpoint: Endpoint::Token,
                        detail: "no refresh_token in the code exchange's answer".into(),
                        class: crate::FailureClass::Rejected,
                        intuit_tid: None,
                    });
                };
                Ok(ConnectedTokens {
                    access_token: g.access_token,
                    refresh_token,
                    expires_in: g.expires_in,
                    refresh_expires_in: g.refresh_expires_in,
                    hard_expires_in: g.refresh_hard_expires_in,
                })
            }
            Err(Once::InvalidGrant(AuthError::InvalidGrant {
                description,
                intuit_tid,
            })) => Err(QboError::Auth(AuthError::CodeRejected {
                description,
                intuit_tid,
            })),
            Err(Once::InvalidGrant(e)) => Err(QboError::Auth(e)),
            Err(Once::Fatal(e) | Once::Transient(_, e)) => Err(e),
        }
    }

    /// The company's name (CompanyInfo's `CompanyName`), read with the access token a code
    /// exchange just granted, from the API root `api_base` (e.g.
    /// [`Environment::api_base_url`]). One request; `None` when the answer has no name.
    ///
    /// # Errors
    /// A [`QboError`] for a refused request or an unreadable answer.
    pub async fn company_name(
        &self,
        api_base: &Url,
        realm_id: &str,
        access_token: &SecretString,
    ) -> Result<Option<String>, QboError> {
        crate::config::validate_realm(realm_id)?;
        let mut url = api_base.clone();
        url.path_segments_mut()
            .map_err(|()| ConfigError::UnusableUrl {
                what: "base_url".into(),
                url: crate::config::redacted(api_base),
            })?
            .pop_if_empty()
            .extend(["v3", "company", realm_id, "companyinfo", realm_id]);
        url.query_pairs_mut().append_pair(
            "minorversion",
            crate::DEFAULT_MINOR_VERSION.to_string().as_str(),
        );
        let endpoint = Endpoint::Api;
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token.expose_secret())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| QboError::Connection {
                endpoint,
                source: e,
            })?;
        let status = resp.status().as_u16();
        let intuit_tid = intuit_tid_of(resp.headers());
        let body = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(QboError::Http {
                endpoint,
                status,
                class: crate::FailureClass::from_status(status, None, None),
                retry_after: None,
                intuit_tid,
                body: None,
            });
        }
        let v: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| QboError::Malformed {
                endpoint,
                detail: format!("CompanyInfo is not JSON (line {})", e.line()),
                class: crate::FailureClass::Malformed,
                intuit_tid,
            })?;
        Ok(v.get("CompanyInfo")
            .and_then(|c| c.get("CompanyName"))
            .and_then(|n| n.as_str())
            .map(str::to_owned))
    }

    /// Revokes the grant `token` (a refresh or an access token) belongs to: its refresh
    /// tokens then answer `invalid_grant`. Intuit answers 200 for a token it does not know.
    ///
    /// # Errors
    /// [`AuthError::InvalidClient`] for refused app credentials, [`AuthError::Refused`] for
    /// another refusal, other [`QboError`]s for network and server failures.
    pub async fn revoke(&self, token: &SecretString) -> Result<(), QboError> {
        let endpoint = Endpoint::Token;
        let body = serde_json::json!({ "token": token.expose_secret() });
        let resp = self
            .http
            .post(self.revoke_url.clone())
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .header(ACCEPT, "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    QboError::Timeout {
                        endpoint,
                        intuit_tid: None,
                    }
                } else {
                    QboError::Connection {
                        endpoint,
                        source: e,
                    }
                }
            })?;
        let status = resp.status().as_u16();
        let intuit_tid = intuit_tid_of(resp.headers());
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let parsed: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let field = |k: &str| {
            parsed
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        let error = field("error");
        let description = field("error_description");
        Err(QboError::Auth(match error.as_deref() {
            Some("invalid_client") => AuthError::InvalidClient {
                description,
                status,
                intuit_tid,
            },
            None if status == 401 => AuthError::InvalidClient {
                description,
                status,
                intuit_tid,
            },
            _ => AuthError::Refused {
                error: error.unwrap_or_else(|| format!("HTTP {status}")),
                description,
                status,
                intuit_tid,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> OAuthApp {
        OAuthApp::new(
            Environment::Sandbox,
            "ABclient",
            SecretString::from("s3cr3t-value".to_owned()),
        )
        .unwrap()
    }

    #[test]
    fn the_consent_url_asks_for_the_accounting_scope_with_a_new_state_each_time() {
        let a = app().authorization("http://localhost:8765/callback");
        let b = app().authorization("http://localhost:8765/callback");
        assert_ne!(a.state(), b.state());
        assert!(a.state().len() >= 32);
        let url = a.url();
        assert!(url.as_str().starts_with(AUTHORIZE_URL));
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("scope"), Some(ACCOUNTING_SCOPE));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("client_id"), Some("ABclient"));
        assert_eq!(get("redirect_uri"), Some("http://localhost:8765/callback"));
        assert_eq!(get("state"), Some(a.state()));
        assert!(!url.as_str().contains("s3cr3t"));
        assert!(!format!("{:?}", app()).contains("s3cr3t"));
    }

    #[test]
    fn callbacks_are_checked_state_first() {
        let a = app().authorization("http://localhost:1/cb");
        let st = a.state().to_owned();
        let ok = a
            .callback(&format!(
                "http://localhost:1/cb?code=AB11code&state={st}&realmId=123145"
            ))
            .unwrap();
        assert_eq!(ok.realm_id, "123145");
        assert_eq!(ok.code.expose_secret(), "AB11code");
        assert!(!format!("{ok:?}").contains("AB11code"));
        // A bare query (what a person may paste) works too.
        assert!(a.callback(&format!("code=c&state={st}&realmId=1")).is_ok());
        assert!(a.callback(&format!("?code=c&state={st}&realmId=1")).is_ok());
        assert_eq!(
            a.callback("http://localhost:1/cb?code=c&state=forged&realmId=1")
                .unwrap_err(),
            AuthError::StateMismatch
        );
        assert_eq!(
            a.callback("http://localhost:1/cb?error=access_denied")
                .unwrap_err(),
            AuthError::StateMismatch
        );
        assert!(matches!(
            a.callback(&format!("http://localhost:1/cb?error=access_denied&state={st}")),
            Err(AuthError::ConsentDenied { error, .. }) if error == "access_denied"
        ));
        assert_eq!(
            a.callback(&format!("http://localhost:1/cb?state={st}&realmId=1"))
                .unwrap_err(),
            AuthError::CallbackIncomplete { missing: "code" }
        );
        assert_eq!(
            a.callback(&format!("http://localhost:1/cb?state={st}&code=c"))
                .unwrap_err(),
            AuthError::CallbackIncomplete { missing: "realmId" }
        );
    }
}
