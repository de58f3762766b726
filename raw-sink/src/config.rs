//! PostgreSQL connection settings read from the environment (SPEC §3).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::Host;

use crate::error::SinkError;

/// Default number of pooled connections.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default time allowed to open one connection (TCP + TLS + authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const PG_CONNECTION_VARS: [&str; 6] = [
    "PG_HOST",
    "PG_PORT",
    "PG_DB",
    "PG_USER",
    "PG_PASSWORD",
    "PG_PASSWORD_FILE",
];

/// How the connection is protected by TLS (`PG_SSLMODE`, or `sslmode` in `DATABASE_URL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// Plain TCP, never TLS.
    Disable,
    /// TLS when the server offers it, plain otherwise; like libpq's `prefer`, the certificate
    /// is not verified (opportunistic encryption only). The default, as in libpq.
    #[default]
    Prefer,
    /// TLS or nothing, and the server certificate is verified (chain and host name) against
    /// the operating system's roots, or against `PG_SSLROOTCERT` when given. Stricter than
    /// libpq's `require`, which does not verify.
    Require,
}

impl SslMode {
    /// Parses `disable`, `prefer` or `require` (case-insensitive).
    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "disable" => Some(Self::Disable),
            "prefer" => Some(Self::Prefer),
            "require" => Some(Self::Require),
            _ => None,
        }
    }

    /// The lowercase name used in configuration.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how to connect to PostgreSQL.
///
/// Built from the environment ([`PgConfig::from_env`]), from a URL ([`PgConfig::from_url`]) or
/// from any lookup function ([`PgConfig::from_lookup`]). The password is held in a
/// [`SecretString`] and never printed: `Debug` shows `[REDACTED]`.
#[derive(Clone)]
pub struct PgConfig {
    /// Connection settings without the password.
    base: tokio_postgres::Config,
    password: Option<SecretString>,
    ssl_mode: SslMode,
    ssl_root_cert: Option<PathBuf>,
    pool_size: usize,
    connect_timeout: Duration,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("target", &self.target())
            .field("dbname", &self.base.get_dbname())
            .field("user", &self.base.get_user())
            .field("password", &self.password.as_ref().map(|_| "[REDACTED]"))
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PgConfig {
    /// Reads the configuration from the process environment.
    ///
    /// Either `DATABASE_URL` (or `DATABASE_URL_FILE`), or `PG_HOST`, `PG_PORT` (default 5432),
    /// `PG_DB`, `PG_USER`, `PG_PASSWORD` (or `PG_PASSWORD_FILE`; optional for trust/peer auth).
    /// Optional: `PG_SSLMODE` (`disable|prefer|require`, overrides the URL's `sslmode`),
    /// `PG_SSLROOTCERT` (PEM bundle of trusted roots for `require`), `PG_POOL_SIZE`,
    /// `PG_CONNECT_TIMEOUT` (seconds). Empty variables count as unset.
    ///
    /// # Errors
    /// [`SinkError::MissingVar`], [`SinkError::ConflictingVars`], [`SinkError::InvalidVar`] or
    /// [`SinkError::SecretFile`], each naming the variable (never its secret value).
    pub fn from_env() -> Result<Self, SinkError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`PgConfig::from_env`], reading variables through `lookup` (tests, embedding).
    ///
    /// # Errors
    /// As [`PgConfig::from_env`].
    pub fn from_lookup<F>(lookup: F) -> Result<Self, SinkError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        let url = read_secret(&get, "DATABASE_URL", "DATABASE_URL_FILE")?;
        let mut config = if let Some(url) = url {
            if let Some(other) = PG_CONNECTION_VARS.into_iter().find(|v| get(v).is_some()) {
                let first = if get("DATABASE_URL").is_some() {
                    "DATABASE_URL"
                } else {
                    "DATABASE_URL_FILE"
                };
                return Err(SinkError::ConflictingVars {
                    first,
                    second: other,
                });
            }
            Self::parse_url(url.expose_secret(), "DATABASE_URL")?
        } else {
            Self::from_parts(&get)?
        };

        if let Some(mode) = get("PG_SSLMODE") {
            config.ssl_mode = SslMode::parse(&mode).ok_or_else(|| SinkError::InvalidVar {
                var: "PG_SSLMODE",
                reason: format!("`{mode}` is not one of disable, prefer, require"),
            })?;
        }
        if let Some(path) = get("PG_SSLROOTCERT") {
            config.ssl_root_cert = Some(PathBuf::from(path));
        }
        if let Some(size) = get("PG_POOL_SIZE") {
            config.pool_size = size
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| SinkError::InvalidVar {
                    var: "PG_POOL_SIZE",
                    reason: format!("`{size}` is not a positive integer"),
                })?;
        }
        if let Some(secs) = get("PG_CONNECT_TIMEOUT") {
            let parsed = secs
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| SinkError::InvalidVar {
                    var: "PG_CONNECT_TIMEOUT",
                    reason: format!("`{secs}` is not a positive number of seconds"),
                })?;
            config.connect_timeout = Duration::from_secs(parsed);
        }
        Ok(config)
    }

    /// Parses a `postgres://user:password@host:port/db?sslmode=...` URL (or a libpq
    /// `key=value` string).
    ///
    /// # Errors
    /// [`SinkError::InvalidVar`] (named `DATABASE_URL`) when the text is not a valid
    /// connection string; the text itself is never echoed.
    pub fn from_url(url: &str) -> Result<Self, SinkError> {
        Self::parse_url(url, "DATABASE_URL")
    }

    fn parse_url(url: &str, var: &'static str) -> Result<Self, SinkError> {
        let parsed: tokio_postgres::Config =
            url.parse()
                .map_err(|e: tokio_postgres::Error| SinkError::InvalidVar {
                    var,
                    reason: describe_parse_error(&e),
                })?;
        if parsed.get_hosts().is_empty() {
            return Err(SinkError::InvalidVar {
                var,
                reason: "no host given".to_owned(),
            });
        }
        if parsed.get_dbname().is_none() {
            return Err(SinkError::InvalidVar {
                var,
                reason: "no database name given".to_owned(),
            });
        }
        if parsed.get_user().is_none() {
            return Err(SinkError::InvalidVar {
                var,
                reason: "no user given".to_owned(),
            });
        }
        let password = parsed
            .get_password()
            .map(|p| SecretString::from(String::from_utf8_lossy(p).into_owned()));
        let ssl_mode = match parsed.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let connect_timeout = parsed
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        Ok(Self {
            base: without_password(&parsed),
            password,
            ssl_mode,
            ssl_root_cert: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout,
        })
    }

    fn from_parts(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, SinkError> {
        let Some(host) = get("PG_HOST") else {
            let any_set = PG_CONNECTION_VARS.iter().any(|v| get(v).is_some());
            return Err(if any_set {
                SinkError::MissingVar {
                    var: "PG_HOST",
                    hint: "PG_HOST is required when DATABASE_URL is not used",
                }
            } else {
                SinkError::MissingVar {
                    var: "DATABASE_URL",
                    hint: "set DATABASE_URL, or PG_HOST, PG_DB, PG_USER and PG_PASSWORD",
                }
            });
        };
        let dbname = get("PG_DB").ok_or(SinkError::MissingVar {
            var: "PG_DB",
            hint: "the database name",
        })?;
        let user = get("PG_USER").ok_or(SinkError::MissingVar {
            var: "PG_USER",
            hint: "the role to connect as",
        })?;
        let port = match get("PG_PORT") {
            None => 5432,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| SinkError::InvalidVar {
                    var: "PG_PORT",
                    reason: format!("`{p}` is not a TCP port number"),
                })?,
        };
        let password = read_secret(get, "PG_PASSWORD", "PG_PASSWORD_FILE")?;

        let mut base = tokio_postgres::Config::new();
        base.host(host.trim())
            .port(port)
            .dbname(dbname.trim())
            .user(user.trim())
            .application_name("qb-backfill");
        Ok(Self {
            base,
            password,
            ssl_mode: SslMode::default(),
            ssl_root_cert: None,
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        })
    }

    /// The same server and credentials, another database (used to create test databases).
    #[must_use]
    pub fn with_database(mut self, dbname: &str) -> Self {
        self.base.dbname(dbname);
        self
    }

    /// Overrides the pool size (at least 1).
    #[must_use]
    pub fn with_pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Overrides the time allowed to open one connection.
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Overrides the TLS mode.
    #[must_use]
    pub fn with_ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// The TLS mode.
    #[must_use]
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// PEM bundle of trusted roots used instead of the system's in [`SslMode::Require`].
    #[must_use]
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.ssl_root_cert.as_deref()
    }

    /// The database name.
    #[must_use]
    pub fn dbname(&self) -> Option<&str> {
        self.base.get_dbname()
    }

    /// The role name.
    #[must_use]
    pub fn user(&self) -> Option<&str> {
        self.base.get_user()
    }

    /// Maximum number of pooled connections.
    #[must_use]
    pub fn pool_size(&self) -> usize {
        self.pool_size
    }

    /// Time allowed to open one connection.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// `host:port` (comma-separated when several hosts), for messages; never the password.
    #[must_use]
    pub fn target(&self) -> String {
        let hosts = self.base.get_hosts();
        let ports = self.base.get_ports();
        hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = ports
                    .get(i)
                    .or_else(|| ports.first())
                    .copied()
                    .unwrap_or(5432);
                match host {
                    Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                    Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The full `tokio_postgres` configuration, password included (only handed to the pool).
    pub(crate) fn to_tokio_postgres(&self) -> tokio_postgres::Config {
        let mut config = self.base.clone();
        if let Some(password) = &self.password {
            config.password(password.expose_secret().as_bytes());
        }
        config.connect_timeout(self.connect_timeout);
        config.ssl_mode(match self.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require => tokio_postgres::config::SslMode::Require,
        });
        if config.get_application_name().is_none() {
            config.application_name("qb-backfill");
        }
        config
    }
}

/// Copies every setting of `parsed` except the password.
fn without_password(parsed: &tokio_postgres::Config) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for host in parsed.get_hosts() {
        match host {
            Host::Tcp(name) => {
                c.host(name);
            }
            #[cfg(unix)]
            Host::Unix(path) => {
                c.host_path(path);
            }
        }
    }
    for addr in parsed.get_hostaddrs() {
        c.hostaddr(*addr);
    }
    for port in parsed.get_ports() {
        c.port(*port);
    }
    if let Some(user) = parsed.get_user() {
        c.user(user);
    }
    if let Some(dbname) = parsed.get_dbname() {
        c.dbname(dbname);
    }
    if let Some(options) = parsed.get_options() {
        c.options(options);
    }
    if let Some(name) = parsed.get_application_name() {
        c.application_name(name);
    }
    if let Some(t) = parsed.get_tcp_user_timeout() {
        c.tcp_user_timeout(*t);
    }
    c.keepalives(parsed.get_keepalives())
        .keepalives_idle(parsed.get_keepalives_idle())
        .target_session_attrs(parsed.get_target_session_attrs())
        .channel_binding(parsed.get_channel_binding())
        .load_balance_hosts(parsed.get_load_balance_hosts())
        .ssl_negotiation(parsed.get_ssl_negotiation());
    if let Some(i) = parsed.get_keepalives_interval() {
        c.keepalives_interval(i);
    }
    if let Some(r) = parsed.get_keepalives_retries() {
        c.keepalives_retries(r);
    }
    c
}

/// A parse error's detail only when it cannot contain part of the secret text.
fn describe_parse_error(e: &tokio_postgres::Error) -> String {
    let detail = std::error::Error::source(e).map(ToString::to_string);
    match detail {
        Some(d) if d.starts_with("invalid value for option") || d.starts_with("unknown option") => {
            format!("not a valid PostgreSQL connection string ({d})")
        }
        _ => "not a valid PostgreSQL connection string (expected postgres://user:password@host:port/dbname)"
            .to_owned(),
    }
}

/// Reads secret `var`, or the file named by `file_var`; both set is an error.
fn read_secret(
    get: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<SecretString>, SinkError> {
    let direct = get(var).map(SecretString::from);
    let file = get(file_var);
    match (direct, file) {
        (Some(_), Some(_)) => Err(SinkError::ConflictingVars {
            first: var,
            second: file_var,
        }),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => read_secret_file(file_var, Path::new(&path)).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_secret_file(var: &'static str, path: &Path) -> Result<SecretString, SinkError> {
    let mut text = std::fs::read_to_string(path).map_err(|source| SinkError::SecretFile {
        var,
        path: path.to_owned(),
        source,
    })?;
    // Files written by editors and `echo` end with a newline that is not part of the secret.
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.is_empty() {
        return Err(SinkError::SecretFile {
            var,
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parts_build_a_config_with_defaults() {
        let cfg = PgConfig::from_lookup(lookup(&[
            ("PG_HOST", "db.example"),
            ("PG_DB", "qb"),
            ("PG_USER", "loader"),
            ("PG_PASSWORD", "s3cret-pw"),
        ]))
        .unwrap();
        assert_eq!(cfg.target(), "db.example:5432");
        assert_eq!(cfg.dbname(), Some("qb"));
        assert_eq!(cfg.user(), Some("loader"));
        assert_eq!(cfg.ssl_mode(), SslMode::Prefer);
        assert_eq!(cfg.pool_size(), DEFAULT_POOL_SIZE);
        let pg = cfg.to_tokio_postgres();
        assert_eq!(pg.get_password(), Some("s3cret-pw".as_bytes()));
        assert!(!format!("{cfg:?}").contains("s3cret-pw"));
    }

    #[test]
    fn url_keeps_settings_but_not_password_in_base() {
        let cfg = PgConfig::from_lookup(lookup(&[(
            "DATABASE_URL",
            "postgres://u:p%40ss@h1:6543/d?sslmode=require&application_name=x",
        )]))
        .unwrap();
        assert_eq!(cfg.target(), "h1:6543");
        assert_eq!(cfg.ssl_mode(), SslMode::Require);
        assert!(cfg.base.get_password().is_none());
        assert_eq!(
            cfg.to_tokio_postgres().get_password(),
            Some("p@ss".as_bytes())
        );
        assert_eq!(cfg.to_tokio_postgres().get_application_name(), Some("x"));
    }

    #[test]
    fn sslmode_variable_overrides_url_and_is_validated() {
        let cfg = PgConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/d?sslmode=require"),
            ("PG_SSLMODE", "DISABLE"),
        ]))
        .unwrap();
        assert_eq!(cfg.ssl_mode(), SslMode::Disable);
        let err = PgConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/d"),
            ("PG_SSLMODE", "verify-full"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("PG_SSLMODE"), "{err}");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let cfg = PgConfig::from_lookup(lookup(&[
            ("DATABASE_URL", "postgres://u@h/d"),
            ("PG_PASSWORD", ""),
            ("PG_HOST", ""),
        ]))
        .unwrap();
        assert_eq!(cfg.target(), "h:5432");
    }

    #[test]
    fn bad_port_and_pool_size_name_the_variable() {
        let base = [("PG_HOST", "h"), ("PG_DB", "d"), ("PG_USER", "u")];
        let mut with_port = base.to_vec();
        with_port.push(("PG_PORT", "54x2"));
        let err = PgConfig::from_lookup(lookup(&with_port)).unwrap_err();
        assert!(err.to_string().contains("PG_PORT"), "{err}");
        let mut with_pool = base.to_vec();
        with_pool.push(("PG_POOL_SIZE", "0"));
        let err = PgConfig::from_lookup(lookup(&with_pool)).unwrap_err();
        assert!(err.to_string().contains("PG_POOL_SIZE"), "{err}");
    }

    #[test]
    fn url_parse_errors_do_not_echo_the_url() {
        let err = PgConfig::from_lookup(lookup(&[(
            "DATABASE_URL",
            "postgres://u:hunter2@h/d?bogus=1",
        )]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("DATABASE_URL") && text.contains("unknown option"),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
        let err = PgConfig::from_url("postgres://u:hunter2@h:notaport/d").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn secret_file_is_read_and_its_trailing_newline_dropped() {
        let path = std::env::temp_dir().join(format!("raw-sink-pw-{}", std::process::id()));
        std::fs::write(&path, "pa ss\r\n").unwrap();
        let cfg = PgConfig::from_lookup(lookup(&[
            ("PG_HOST", "h"),
            ("PG_DB", "d"),
            ("PG_USER", "u"),
            ("PG_PASSWORD_FILE", path.to_str().unwrap()),
        ]))
        .unwrap();
        std::fs::write(&path, "\n").unwrap();
        let empty = PgConfig::from_lookup(lookup(&[("DATABASE_URL_FILE", path.to_str().unwrap())]))
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            cfg.to_tokio_postgres().get_password(),
            Some("pa ss".as_bytes())
        );
        assert!(empty.to_string().contains("DATABASE_URL_FILE"), "{empty}");
    }

    #[test]
    fn ipv6_target_is_bracketed() {
        let cfg = PgConfig::from_url("postgres://u@[::1]:5433/d").unwrap();
        assert_eq!(cfg.target(), "[::1]:5433");
    }
}
