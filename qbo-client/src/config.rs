//! Client configuration: environments, credentials and the `QBO_*` variables (SPEC §3).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use reqwest::Url;
use secrecy::SecretString;

/// Production API root.
pub const PRODUCTION_BASE_URL: &str = "https://quickbooks.api.intuit.com";
/// Sandbox API root.
pub const SANDBOX_BASE_URL: &str = "https://sandbox-quickbooks.api.intuit.com";
/// Intuit's OAuth 2.0 token endpoint (the same for sandbox and production).
pub const TOKEN_URL: &str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer";

/// Which QuickBooks Online environment the credentials belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Environment {
    /// Developer sandbox companies (`sandbox-quickbooks.api.intuit.com`).
    Sandbox,
    /// Real companies (`quickbooks.api.intuit.com`).
    Production,
}

impl Environment {
    /// The default API root of this environment.
    #[must_use]
    pub const fn api_base_url(self) -> &'static str {
        match self {
            Self::Sandbox => SANDBOX_BASE_URL,
            Self::Production => PRODUCTION_BASE_URL,
        }
    }

    /// The default token endpoint (Intuit uses one host for both environments).
    #[must_use]
    pub const fn token_url(self) -> &'static str {
        TOKEN_URL
    }

    /// The name used in `QBO_ENV`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Production => "production",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sandbox" => Ok(Self::Sandbox),
            "production" => Ok(Self::Production),
            _ => Err(ConfigError::InvalidEnvironment {
                value: s.to_owned(),
            }),
        }
    }
}

/// OAuth 2.0 credentials of one app and company. Secrets never print.
#[derive(Clone)]
pub struct Credentials {
    /// The app's client id (not secret).
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: SecretString,
    /// The refresh token from configuration (a token store's newer one wins at start).
    pub refresh_token: SecretString,
}

impl Credentials {
    /// Bundles credentials, wrapping the secrets at once.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
            refresh_token: SecretString::from(refresh_token.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("refresh_token", &"[REDACTED]")
            .finish()
    }
}

/// Everything needed to talk to one QBO company.
#[derive(Debug, Clone)]
pub struct QboConfig {
    /// Sandbox or production; picks the default URLs.
    pub environment: Environment,
    /// The company id (`realmId`).
    pub realm_id: String,
    /// App credentials and the configured refresh token.
    pub credentials: Credentials,
    /// API root override (e.g. `http://127.0.0.1:8080` for qbo-sim); the client appends
    /// `/v3/company/{realm}/query`.
    pub base_url: Option<Url>,
    /// Full token endpoint override.
    pub token_url: Option<Url>,
    /// Allow plain `http://` overrides to hosts other than loopback (`QBO_ALLOW_INSECURE_HTTP`).
    /// Only for a simulator on a private network (e.g. the Compose demo); never for a real
    /// company, whose tokens would then cross the network in clear text.
    pub allow_insecure_http: bool,
}

impl QboConfig {
    /// A configuration using the environment's default URLs.
    pub fn new(
        environment: Environment,
        realm_id: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        Self {
            environment,
            realm_id: realm_id.into(),
            credentials,
            base_url: None,
            token_url: None,
            allow_insecure_http: false,
        }
    }

    /// Allows plain `http://` URL overrides to non-loopback hosts (see
    /// [`QboConfig::allow_insecure_http`]). Call it before the `with_*_url` setters.
    #[must_use]
    pub fn allowing_insecure_http(mut self) -> Self {
        self.allow_insecure_http = true;
        self
    }

    /// Overrides the API root.
    ///
    /// # Errors
    /// [`ConfigError::InvalidUrl`] when `url` does not parse, [`ConfigError::InsecureUrl`] when it
    /// is plain http to a host other than loopback.
    pub fn with_base_url(mut self, url: &str) -> Result<Self, ConfigError> {
        self.base_url = Some(parse_url("base_url", url, self.allow_insecure_http)?);
        Ok(self)
    }

    /// Overrides the token endpoint.
    ///
    /// # Errors
    /// As [`QboConfig::with_base_url`].
    pub fn with_token_url(mut self, url: &str) -> Result<Self, ConfigError> {
        self.token_url = Some(parse_url("token_url", url, self.allow_insecure_http)?);
        Ok(self)
    }

    /// Reads the configuration from the process environment (`QBO_*`, see
    /// [`QboConfig::from_lookup`]).
    ///
    /// # Errors
    /// See [`QboConfig::from_lookup`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable name → value function), so callers
    /// and tests need not touch the process environment.
    ///
    /// Variables: `QBO_CLIENT_ID`, `QBO_CLIENT_SECRET`, `QBO_REALM_ID`, optional
    /// `QBO_REFRESH_TOKEN` (unset: the token store must hold one, e.g. after `auth connect`),
    /// `QBO_ENV` (`sandbox` | `production`), optional `QBO_BASE_URL`, `QBO_TOKEN_URL` and
    /// `QBO_ALLOW_INSECURE_HTTP` (`true` allows plain http overrides to non-loopback hosts). The
    /// client id, secret and refresh token may instead be given as `X_FILE`, the path of a file
    /// holding the value (trailing newlines and spaces are trimmed). Empty values count as unset.
    ///
    /// # Errors
    /// A missing or empty required variable, both `X` and `X_FILE` set, an unreadable `X_FILE`,
    /// an unknown `QBO_ENV`, an invalid realm id, or an invalid or insecure URL.
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let client_id = secret_var(&get, "QBO_CLIENT_ID")?;
        let client_secret = secret_var(&get, "QBO_CLIENT_SECRET")?;
        // Optional: a company connected with `auth connect` has its token in the token store.
        let refresh_token = match secret_var(&get, "QBO_REFRESH_TOKEN") {
            Ok(t) => t,
            Err(ConfigError::Missing { .. }) => String::new(),
            Err(e) => return Err(e),
        };
        let realm_id = get("QBO_REALM_ID")
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| ConfigError::Missing {
                var: "QBO_REALM_ID".into(),
            })?;
        validate_realm(&realm_id)?;
        let environment = get("QBO_ENV")
            .ok_or_else(|| ConfigError::Missing {
                var: "QBO_ENV".into(),
            })?
            .parse::<Environment>()?;
        let allow_insecure_http = match get("QBO_ALLOW_INSECURE_HTTP") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConfigError::InvalidFlag {
                        var: "QBO_ALLOW_INSECURE_HTTP".into(),
                        value: v,
                    });
                }
            },
        };
        let base_url = get("QBO_BASE_URL")
            .map(|v| parse_url("QBO_BASE_URL", v.trim(), allow_insecure_http))
            .transpose()?;
        let token_url = get("QBO_TOKEN_URL")
            .map(|v| parse_url("QBO_TOKEN_URL", v.trim(), allow_insecure_http))
            .transpose()?;
        Ok(Self {
            environment,
            realm_id,
            credentials: Credentials {
                client_id: client_id.trim().to_owned(),
                client_secret: SecretString::from(client_secret),
                refresh_token: SecretString::from(refresh_token),
            },
            base_url,
            token_url,
            allow_insecure_http,
        })
    }

    /// The API root in effect (override or the environment's default).
    ///
    /// # Errors
    /// [`ConfigError::InsecureUrl`] if an override is plain http to a non-loopback host.
    pub fn resolved_base_url(&self) -> Result<Url, ConfigError> {
        resolve(
            "base_url",
            self.base_url.as_ref(),
            self.environment.api_base_url(),
            self.allow_insecure_http,
        )
    }

    /// The token endpoint in effect.
    ///
    /// # Errors
    /// As [`QboConfig::resolved_base_url`].
    pub fn resolved_token_url(&self) -> Result<Url, ConfigError> {
        resolve(
            "token_url",
            self.token_url.as_ref(),
            self.environment.token_url(),
            self.allow_insecure_http,
        )
    }
}

fn resolve(
    what: &str,
    over: Option<&Url>,
    default: &str,
    allow_insecure_http: bool,
) -> Result<Url, ConfigError> {
    match over {
        Some(url) => {
            check_url(what, url, allow_insecure_http)?;
            Ok(url.clone())
        }
        None => parse_url(what, default, false),
    }
}

/// Reads the optional secret `var` or `var_FILE` (never both) from the process environment;
/// `None` when neither is set (or both are empty).
pub(crate) fn read_secret_env(var: &str) -> Result<Option<SecretString>, ConfigError> {
    let get = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match secret_var(&get, var) {
        Ok(v) => Ok(Some(SecretString::from(v))),
        Err(ConfigError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads `var` or `var_FILE` (never both).
pub(crate) fn secret_var<G>(get: &G, var: &str) -> Result<String, ConfigError>
where
    G: Fn(&str) -> Option<String>,
{
    let file_var = format!("{var}_FILE");
    match (get(var), get(&file_var)) {
        (Some(_), Some(_)) => Err(ConfigError::Conflict {
            var: var.to_owned(),
        }),
        (Some(value), None) => Ok(value),
        (None, Some(path)) => {
            let path = PathBuf::from(path.trim());
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
                var: file_var.clone(),
                path: path.clone(),
                source,
            })?;
            let value = text.trim_end().to_owned();
            if value.is_empty() {
                return Err(ConfigError::EmptyFile {
                    var: file_var,
                    path,
                });
            }
            Ok(value)
        }
        (None, None) => Err(ConfigError::Missing {
            var: format!("{var} (or {file_var})"),
        }),
    }
}

pub(crate) fn validate_realm(realm: &str) -> Result<(), ConfigError> {
    let ok = !realm.is_empty()
        && realm.len() <= 64
        && realm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidRealm {
            value: realm.to_owned(),
        })
    }
}

pub(crate) fn parse_url(
    what: &str,
    text: &str,
    allow_insecure_http: bool,
) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| ConfigError::InvalidUrl {
        what: what.to_owned(),
        source: Box::new(e),
    })?;
    check_url(what, &url, allow_insecure_http)?;
    Ok(url)
}

/// https anywhere; plain http only to loopback hosts (how tests reach qbo-sim), or anywhere
/// when explicitly allowed.
pub(crate) fn check_url(
    what: &str,
    url: &Url,
    allow_insecure_http: bool,
) -> Result<(), ConfigError> {
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(ConfigError::UnusableUrl {
            what: what.to_owned(),
            url: redacted(url),
        });
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(url) => Ok(()),
        _ => Err(ConfigError::InsecureUrl {
            what: what.to_owned(),
            url: redacted(url),
        }),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// A URL for messages, without any user info.
pub(crate) fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    // Only fails for URLs that cannot carry credentials anyway.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

/// Invalid or incomplete configuration. Messages name variables and paths, never values of secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required variable is not set (or empty).
    #[error("{var} is not set")]
    Missing {
        /// The variable (and its `_FILE` alternative).
        var: String,
    },
    /// Both `X` and `X_FILE` are set.
    #[error("both {var} and {var}_FILE are set; give only one")]
    Conflict {
        /// The variable.
        var: String,
    },
    /// `X_FILE` names a file that cannot be read.
    #[error("cannot read {var} file `{}`", path.display())]
    ReadFile {
        /// The `_FILE` variable.
        var: String,
        /// The path it names.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `X_FILE` names an empty file.
    #[error("{var} file `{}` is empty", path.display())]
    EmptyFile {
        /// The `_FILE` variable.
        var: String,
        /// The path it names.
        path: PathBuf,
    },
    /// `QBO_ENV` is neither `sandbox` nor `production`.
    #[error(
        "QBO_ENV `{value}` is not a QuickBooks environment (expected `sandbox` or `production`)"
    )]
    InvalidEnvironment {
        /// The value given.
        value: String,
    },
    /// The realm id is empty or has characters other than letters, digits, `-`, `_`.
    #[error("realm id `{value}` is invalid (expected the company id, e.g. 9130347596348566)")]
    InvalidRealm {
        /// The value given.
        value: String,
    },
    /// A URL does not parse.
    #[error("{what} is not a valid URL")]
    InvalidUrl {
        /// Which setting.
        what: String,
        /// The parse error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A URL uses plain http to a non-loopback host (or another scheme).
    #[error(
        "{what} `{url}` must use https (plain http is only allowed to loopback hosts: 127.0.0.0/8, ::1, localhost; or to a simulator with QBO_ALLOW_INSECURE_HTTP=true)"
    )]
    InsecureUrl {
        /// Which setting.
        what: String,
        /// The URL, without user info.
        url: String,
    },
    /// A yes/no variable holds something else.
    #[error("{var} must be true or false, not `{value}`")]
    InvalidFlag {
        /// The variable.
        var: String,
        /// What it held.
        value: String,
    },
    /// A setting holds a value of the wrong form (the message never quotes a secret).
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A URL has no host or cannot take a path.
    #[error("{what} `{url}` cannot be used as an endpoint")]
    UnusableUrl {
        /// Which setting.
        what: String,
        /// The URL, without user info.
        url: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("QBO_CLIENT_ID", "client-id-1"),
        ("QBO_CLIENT_SECRET", "s3cr3t-client-value"),
        ("QBO_REFRESH_TOKEN", "AB11-refresh-token-value"),
        ("QBO_REALM_ID", "9130347596348566"),
        ("QBO_ENV", "sandbox"),
    ];

    fn with(
        extra: &[(&'static str, &'static str)],
        without: &[&str],
    ) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| !without.contains(k))
            .collect();
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn reads_all_variables() {
        let cfg = QboConfig::from_lookup(lookup(&with(
            &[
                ("QBO_BASE_URL", "http://127.0.0.1:8080"),
                (
                    "QBO_TOKEN_URL",
                    "http://localhost:8080/oauth2/v1/tokens/bearer",
                ),
            ],
            &[],
        )))
        .unwrap();
        assert_eq!(cfg.environment, Environment::Sandbox);
        assert_eq!(cfg.realm_id, "9130347596348566");
        assert_eq!(cfg.credentials.client_id, "client-id-1");
        assert_eq!(
            cfg.credentials.client_secret.expose_secret(),
            "s3cr3t-client-value"
        );
        assert_eq!(
            cfg.credentials.refresh_token.expose_secret(),
            "AB11-refresh-token-value"
        );
        assert_eq!(
            cfg.resolved_base_url().unwrap().as_str(),
            "http://127.0.0.1:8080/"
        );
        assert_eq!(
            cfg.resolved_token_url().unwrap().as_str(),
            "http://localhost:8080/oauth2/v1/tokens/bearer"
        );
    }

    #[test]
    fn environments_pick_default_urls() {
        let cfg = QboConfig::from_lookup(lookup(&with(&[("QBO_ENV", "Production")], &["QBO_ENV"])))
            .unwrap();
        assert_eq!(cfg.environment, Environment::Production);
        assert_eq!(
            cfg.resolved_base_url().unwrap().as_str(),
            "https://quickbooks.api.intuit.com/"
        );
        assert_eq!(cfg.resolved_token_url().unwrap().as_str(), TOKEN_URL);
        let cfg = QboConfig::from_lookup(lookup(BASE)).unwrap();
        assert_eq!(
            cfg.resolved_base_url().unwrap().as_str(),
            "https://sandbox-quickbooks.api.intuit.com/"
        );
        let err = QboConfig::from_lookup(lookup(&with(&[("QBO_ENV", "staging")], &["QBO_ENV"])))
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidEnvironment { .. }),
            "{err}"
        );
        let err = QboConfig::from_lookup(lookup(&with(&[], &["QBO_ENV"]))).unwrap_err();
        assert_eq!(err.to_string(), "QBO_ENV is not set");
    }

    #[test]
    fn missing_and_empty_variables_are_named() {
        for var in ["QBO_CLIENT_ID", "QBO_CLIENT_SECRET"] {
            let err = QboConfig::from_lookup(lookup(&with(&[], &[var]))).unwrap_err();
            assert_eq!(err.to_string(), format!("{var} (or {var}_FILE) is not set"));
        }
        // The refresh token may be left to the token store (a company connected with `auth
        // connect`): unset, it is empty, and the provider never sends an empty one.
        let cfg = QboConfig::from_lookup(lookup(&with(&[], &["QBO_REFRESH_TOKEN"]))).unwrap();
        assert!(cfg.credentials.refresh_token.expose_secret().is_empty());
        let err =
            QboConfig::from_lookup(lookup(&with(&[("QBO_REALM_ID", "  ")], &["QBO_REALM_ID"])))
                .unwrap_err();
        assert_eq!(err.to_string(), "QBO_REALM_ID is not set");
        let err = QboConfig::from_lookup(lookup(&with(
            &[("QBO_REALM_ID", "../x")],
            &["QBO_REALM_ID"],
        )))
        .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidRealm { .. }));
    }

    #[test]
    fn file_variants() {
        let dir = tempfile::tempdir().unwrap();
        let secret_path = dir.path().join("secret");
        std::fs::write(&secret_path, "file-secret-value\n").unwrap();
        let token_path = dir.path().join("token");
        std::fs::write(&token_path, "file-refresh-token\r\n").unwrap();
        let sp = secret_path.to_str().unwrap().to_owned();
        let tp = token_path.to_str().unwrap().to_owned();
        let mut pairs: Vec<(String, String)> =
            with(&[], &["QBO_CLIENT_SECRET", "QBO_REFRESH_TOKEN"])
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        pairs.push(("QBO_CLIENT_SECRET_FILE".into(), sp));
        pairs.push(("QBO_REFRESH_TOKEN_FILE".into(), tp));
        let map: HashMap<String, String> = pairs.into_iter().collect();
        let cfg = QboConfig::from_lookup(|k| map.get(k).cloned()).unwrap();
        assert_eq!(
            cfg.credentials.client_secret.expose_secret(),
            "file-secret-value"
        );
        assert_eq!(
            cfg.credentials.refresh_token.expose_secret(),
            "file-refresh-token"
        );

        // Both set: error naming the variable.
        let mut both = map.clone();
        both.insert("QBO_CLIENT_SECRET".into(), "direct".into());
        let err = QboConfig::from_lookup(|k| both.get(k).cloned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "both QBO_CLIENT_SECRET and QBO_CLIENT_SECRET_FILE are set; give only one"
        );

        // Unreadable file: error naming variable and path.
        let mut missing = map.clone();
        missing.insert(
            "QBO_REFRESH_TOKEN_FILE".into(),
            "/nonexistent/qbo/token".into(),
        );
        let err = QboConfig::from_lookup(|k| missing.get(k).cloned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot read QBO_REFRESH_TOKEN_FILE file `/nonexistent/qbo/token`"
        );
        assert!(std::error::Error::source(&err).is_some());

        // Empty file.
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let mut e = map;
        e.insert(
            "QBO_REFRESH_TOKEN_FILE".into(),
            empty.to_str().unwrap().to_owned(),
        );
        let err = QboConfig::from_lookup(|k| e.get(k).cloned()).unwrap_err();
        assert!(matches!(err, ConfigError::EmptyFile { .. }), "{err}");
    }

    #[test]
    fn insecure_http_only_when_explicitly_allowed() {
        let mut v = with(&[], &[]);
        v.push(("QBO_BASE_URL", "http://qbo-sim:8080"));
        assert!(matches!(
            QboConfig::from_lookup(lookup(&v)).unwrap_err(),
            ConfigError::InsecureUrl { .. }
        ));
        v.push(("QBO_ALLOW_INSECURE_HTTP", "true"));
        let cfg = QboConfig::from_lookup(lookup(&v)).unwrap();
        assert!(cfg.allow_insecure_http);
        assert_eq!(
            cfg.resolved_base_url().unwrap().as_str(),
            "http://qbo-sim:8080/"
        );
        v.pop();
        v.push(("QBO_ALLOW_INSECURE_HTTP", "maybe"));
        assert!(matches!(
            QboConfig::from_lookup(lookup(&v)).unwrap_err(),
            ConfigError::InvalidFlag { .. }
        ));
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://127.8.9.10",
            "http://localhost:1234/prefix",
            "http://LOCALHOST.",
            "http://[::1]:80",
            "https://proxy.example.com/qbo",
        ] {
            let mut v = with(&[], &[]);
            v.push(("QBO_BASE_URL", ok));
            assert!(QboConfig::from_lookup(lookup(&v)).is_ok(), "{ok}");
        }
        for bad in [
            "http://quickbooks.api.intuit.com",
            "http://10.0.0.1",
            "http://128.0.0.1",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "http://[::2]",
        ] {
            let mut v = with(&[], &[]);
            v.push(("QBO_TOKEN_URL", bad));
            let err = QboConfig::from_lookup(lookup(&v)).unwrap_err();
            assert!(
                matches!(err, ConfigError::InsecureUrl { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("must use https"), "{err}");
        }
        let mut v = with(&[], &[]);
        v.push(("QBO_BASE_URL", "not a url"));
        assert!(matches!(
            QboConfig::from_lookup(lookup(&v)).unwrap_err(),
            ConfigError::InvalidUrl { .. }
        ));
        // Hand-built configs are checked too.
        let mut cfg = QboConfig::from_lookup(lookup(BASE)).unwrap();
        cfg.base_url = Some(Url::parse("http://example.com").unwrap());
        assert!(cfg.resolved_base_url().is_err());
        assert!(
            cfg.clone()
                .with_base_url("http://user:pw@example.com")
                .unwrap_err()
                .to_string()
                .contains("http://example.com/")
        );
    }

    #[test]
    fn debug_is_redacted() {
        let cfg = QboConfig::from_lookup(lookup(BASE)).unwrap();
        let text = format!("{cfg:?} {:?}", cfg.credentials);
        assert!(!text.contains("s3cr3t-client-value"), "{text}");
        assert!(!text.contains("AB11-refresh-token-value"), "{text}");
        assert!(text.contains("client-id-1"));
    }
}
