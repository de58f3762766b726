//! `auth connect | status | revoke | disconnect`: connecting a company with Intuit's
//! authorization-code flow, and watching and ending that connection.
//!
//! `connect` prints (and on a desktop opens) the consent URL, takes the redirect on a loopback
//! listener or as a pasted URL, checks its `state`, exchanges the code, saves the refresh token
//! under the `realmId` that came back (before anything else), records the company's name and
//! the app, and says what to run next. `status` reads only the non-secret facts beside each
//! token; its exit status is for monitoring (0 fine, 1 an expiry within the warning period,
//! 3 a company without a usable token). `revoke` ends the grant at Intuit and removes the
//! token; `disconnect` is the offboarding path (revoke, remove, and what to delete next).
//! No token, code or secret is ever printed.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use qbo_client::{
    AuthError, Authorization, QboError, SecretString, TokenMetadata, TokenNote, TokenStore, Url,
};
use raw_sink::{PgConfig, Sink};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::run::TokenStoreSpec;
use crate::{Error, ExitStatus};

/// The default redirect URI (register it in the app's Keys tab, or pass another).
pub const DEFAULT_REDIRECT_URI: &str = "http://localhost:8765/callback";

/// Days before an expiry from which `status` and every run warn.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What `auth` does.
#[derive(Debug, Subcommand)]
pub enum AuthAction {
    /// Connect a company: open Intuit's consent page, receive the redirect, store the refresh
    /// token under the company's realm id.
    Connect(ConnectArgs),
    /// The connected companies: name, app, last rotation, expiries, last success. Exit 0 when
    /// all are fine, 1 when an expiry is within --warn-days, 3 when a company has no usable
    /// token.
    Status(StatusArgs),
    /// Revoke a company's grant at Intuit and remove its stored token (a run then exits 3
    /// until it is connected again).
    Revoke(RealmArgs),
    /// Offboard a company: revoke, remove its token and facts, and print what else to delete.
    Disconnect(RealmArgs),
}

/// Options of `auth connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The redirect URI registered in the Intuit app; a loopback one is served by this command.
    #[arg(long, default_value = DEFAULT_REDIRECT_URI)]
    pub redirect_uri: String,
    /// Do not listen: paste the URL the browser was redirected to (headless machines).
    #[arg(long)]
    pub paste: bool,
    /// Do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// How long to wait for the redirect, in seconds.
    #[arg(long, default_value = "300")]
    pub timeout_secs: u64,
    /// Where the refresh token is kept: db (the ledger schema) or file:PATH.
    #[arg(long, default_value = "db")]
    pub token_store: TokenStoreSpec,
    /// Connect with this Intuit app (its client id) instead of QBO_CLIENT_ID's; its secret
    /// comes from QBO_APPS_FILE. The app is recorded with the token: runs, revoke and
    /// disconnect of the company use it.
    #[arg(long, value_name = "CLIENT_ID")]
    pub app: Option<String>,
}

/// Options of `auth status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this company (default: every stored one).
    #[arg(long)]
    pub realm: Option<String>,
    /// Warn (and exit 1) when an expiry is fewer than this many days away.
    #[arg(long, default_value_t = EXPIRY_WARNING_DAYS)]
    pub warn_days: i64,
    /// Where the refresh tokens are kept: db or file:PATH.
    #[arg(long, default_value = "db")]
    pub token_store: TokenStoreSpec,
}

/// Options naming one company.
#[derive(Debug, Args)]
pub struct RealmArgs {
    /// The company (realm id).
    #[arg(long, env = "QBO_REALM_ID")]
    pub realm: String,
    /// Where the refresh token is kept: db or file:PATH.
    #[arg(long, default_value = "db")]
    pub token_store: TokenStoreSpec,
}

/// Runs an `auth` subcommand.
pub(super) async fn auth(action: AuthAction) -> Result<ExitStatus, Error> {
    match action {
        AuthAction::Connect(a) => connect(&a).await,
        AuthAction::Status(a) => status(&a).await,
        AuthAction::Revoke(a) => revoke(&a, false).await,
        AuthAction::Disconnect(a) => revoke(&a, true).await,
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn connect_error(e: QboError) -> Error {
    Error::Connect(e)
}

/// An opened token store and how to name it.
struct Opened {
    store: Arc<dyn TokenStore>,
    what: String,
}

async fn open_store(spec: &TokenStoreSpec, realm_for_check: &str) -> Result<Opened, Error> {
    let key = crate::token_key_from_env()?;
    match spec {
        TokenStoreSpec::File(path) => Ok(Opened {
            store: crate::open_token_store(
                crate::TokenStoreLocation::File(path),
                realm_for_check,
                key,
            )
            .await?,
            what: format!("file:{}", path.display()),
        }),
        TokenStoreSpec::Db => {
            let pg = PgConfig::from_env().map_err(Error::PgConfig)?;
            let sink = Sink::connect(&pg).await.map_err(Error::Database)?;
            sink.migrate().await.map_err(Error::Migrations)?;
            Ok(Opened {
                store: crate::open_token_store(
                    crate::TokenStoreLocation::Database(&sink),
                    realm_for_check,
                    key,
                )
                .await?,
                what: "backfill.oauth_tokens".to_owned(),
            })
        }
    }
}

/// The loopback address and path a redirect URI names, if it is one this command can serve.
fn loopback(uri: &Url) -> Option<(std::net::SocketAddr, String)> {
    if uri.scheme() != "http" {
        return None;
    }
    let ip = match uri.host_str()? {
        "localhost" | "127.0.0.1" => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        "[::1]" | "::1" => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        _ => return None,
    };
    let port = uri.port_or_known_default()?;
    Some((std::net::SocketAddr::new(ip, port), uri.path().to_owned()))
}

async fn connect(args: &ConnectArgs) -> Result<ExitStatus, Error> {
    // Everything is checked before the person is sent to Intuit.
    let app = super::apps::oauth_app(args.app.as_deref(), None)?;
    let api_base = match env("QBO_BASE_URL").filter(|v| !v.trim().is_empty()) {
        Some(v) => Url::parse(v.trim())
            .map_err(|e| Error::Usage(format!("QBO_BASE_URL {v:?} is not a URL: {e}")))?,
        None => {
            let environment = env("QBO_ENV")
                .unwrap_or_default()
                .parse::<qbo_client::Environment>()
                .map_err(Error::QboConfig)?;
            Url::parse(environment.api_base_url())
                .map_err(|e| Error::Usage(format!("the API URL: {e}")))?
        }
    };
    let redirect = Url::parse(&args.redirect_uri).map_err(|e| {
        Error::Usage(format!(
            "--redirect-uri {:?} is not a URL ({e}); give the redirect URI registered in the app, e.g. {DEFAULT_REDIRECT_URI}",
            args.redirect_uri
        ))
    })?;
    let listener = if args.paste {
        None
    } else {
        let Some((addr, _)) = loopback(&redirect) else {
            return Err(Error::Usage(format!(
                "--redirect-uri {} is not a plain-http loopback address this command can listen on; \
                 use --paste and paste the URL the browser ends on, or register and pass {DEFAULT_REDIRECT_URI}",
                args.redirect_uri
            )));
        };
        Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::Usage(format!(
                "cannot listen on {addr} for the redirect ({e}): the port is in use (another program, \
                 or another connect run); stop it, or register another redirect URI in the app and pass \
                 --redirect-uri http://localhost:PORT/callback, or use --paste"
            ))
        })?)
    };
    // The store is checked before the consent: a code is single use, and a token that cannot
    // be saved would be lost with it.
    let opened = open_store(&args.token_store, "0").await?;
    let auth = app.authorization(&args.redirect_uri);
    println!(
        "Open this URL in a browser, sign in as an admin of the company and approve \
         (app {}):\n\n  {}\n",
        app.client_id(),
        auth.url()
    );
    if !args.no_browser && (env("DISPLAY").is_some() || env("WAYLAND_DISPLAY").is_some()) {
        // Best effort: the URL is printed either way.
        let _ = std::process::Command::new("xdg-open")
            .arg(auth.url().as_str())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    let wait = Duration::from_secs(args.timeout_secs.max(1));
    let redirected = match listener {
        Some(l) => receive(l, &redirect, &auth, wait).await?,
        None => {
            println!("Then paste here the whole URL the browser was sent to, and press Enter:");
            paste(wait).await?
        }
    };
    let callback = auth
        .callback(&redirected)
        .map_err(|e| connect_error(QboError::Auth(e)))?;
    let tokens = app
        .exchange_code(&callback.code, auth.redirect_uri())
        .await
        .map_err(connect_error)?;
    let realm = callback.realm_id.as_str();
    // The token first: it is the only copy of the grant.
    opened
        .store
        .save(realm, &tokens.refresh_token)
        .await
        .map_err(Error::TokenStore)?;
    let company = match app
        .company_name(&api_base, realm, &tokens.access_token)
        .await
    {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(realm, error = %crate::run::error_chain(&e), "company_name_unknown");
            None
        }
    };
    opened
        .store
        .note(
            realm,
            &TokenNote::Connected {
                company_name: company.clone(),
                client_id: app.client_id().to_owned(),
                refresh_expires_in: tokens.refresh_expires_in,
                hard_expires_in: tokens.hard_expires_in,
            },
        )
        .await
        .map_err(Error::TokenStore)?;
    tracing::info!(realm, client_id = app.client_id(), "company_connected");
    let name = company.as_deref().unwrap_or("(name unknown)");
    let store_flag = match &args.token_store {
        TokenStoreSpec::Db => String::new(),
        TokenStoreSpec::File(p) => format!(" --token-store file:{}", p.display()),
    };
    let apps_note = if args.app.is_some() {
        " Runs of this company need QBO_APPS_FILE with this app's secret."
    } else {
        ""
    };
    println!(
        "Connected {name} (realm {realm}) with app {}; its refresh token is stored in {}.\n\
         Next: QBO_REALM_ID={realm} qb-backfill --entity Customer --start 2024-01-01 --end 2024-02-01{store_flag}\n\
         (QBO_REFRESH_TOKEN is not needed: the stored token is used and kept rotated.){apps_note} \
         Check the connection with: qb-backfill auth status --realm {realm}{store_flag}",
        app.client_id(),
        opened.what
    );
    Ok(ExitStatus::Success)
}

/// A small page for the browser after the redirect.
fn page(title: &str, text: &str) -> String {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><p>{text}</p>"
    );
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Waits for the browser's request to the redirect URI's path and returns its URL. Other paths
/// (a favicon) get 404 and waiting goes on.
async fn receive(
    listener: tokio::net::TcpListener,
    redirect: &Url,
    auth: &Authorization,
    wait: Duration,
) -> Result<String, Error> {
    let path = redirect.path().to_owned();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
        let Ok(Ok((mut sock, _))) = accepted else {
            return Err(no_redirect(redirect, wait));
        };
        let mut buf = vec![0u8; 16 * 1024];
        let mut len = 0;
        // The request line is all that is needed; read until its end (or the buffer is full).
        while len < buf.len() && !buf[..len].windows(2).any(|w| w == b"\r\n") {
            match tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf[len..])).await {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                Ok(Ok(n)) => len += n,
            }
        }
        let head = String::from_utf8_lossy(&buf[..len]).into_owned();
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or_default()
            .to_owned();
        let target_path = target.split('?').next().unwrap_or_default();
        if target_path != path {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            continue;
        }
        // Answer the browser with what will happen; the command line says the rest.
        let answer = match auth.callback(&target) {
            Ok(_) => page(
                "Approved",
                "qb-backfill received the approval; you can close this tab and go back to the terminal.",
            ),
            Err(e) => page("Not connected", &html_escape(&e.to_string())),
        };
        let _ = sock.write_all(answer.as_bytes()).await;
        let _ = sock.shutdown().await;
        return Ok(target);
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn no_redirect(redirect: &Url, wait: Duration) -> Error {
    Error::Usage(format!(
        "no redirect arrived within {} s: if the browser shows that the redirect_uri is invalid, \
         register {redirect} exactly in the app's Keys tab (Redirect URIs, for this environment's \
         keys) or pass --redirect-uri with one that is; if the browser ended on a page that did \
         not load, run again with --paste and paste that page's URL",
        wait.as_secs()
    ))
}

async fn paste(wait: Duration) -> Result<String, Error> {
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    match tokio::time::timeout(wait, read).await {
        Ok(Ok(Ok(line))) if !line.trim().is_empty() => Ok(line.trim().to_owned()),
        Ok(Ok(Ok(_))) => Err(Error::Usage(
            "nothing was pasted: paste the whole URL the browser was redirected to (with code=, \
             state= and realmId=)"
                .to_owned(),
        )),
        Ok(Ok(Err(e))) => Err(Error::Usage(format!("reading the pasted URL: {e}"))),
        Ok(Err(e)) => Err(Error::Usage(format!("reading the pasted URL: {e}"))),
        Err(_) => Err(Error::Usage(format!(
            "no URL was pasted within {} s; run the command again",
            wait.as_secs()
        ))),
    }
}

/// Days from `now` to `at`, rounded down.
fn days_until(at: OffsetDateTime, now: OffsetDateTime) -> i64 {
    (at - now).whole_days()
}

fn fmt_time(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "-".to_owned(), crate::window::format_utc)
}

/// The warnings of one company's facts as of `now`: expiries within `warn_days`, or past.
#[must_use]
pub fn expiry_warnings(m: &TokenMetadata, now: OffsetDateTime, warn_days: i64) -> Vec<String> {
    let mut out = Vec::new();
    for (what, at) in [
        ("refresh token (rolling)", m.refresh_expires_at),
        ("connection (hard)", m.hard_expires_at),
    ] {
        let Some(at) = at else { continue };
        let days = days_until(at, now);
        if at <= now {
            out.push(format!(
                "the {what} expiry passed at {}: reconnect with `qb-backfill auth connect`",
                crate::window::format_utc(at)
            ));
        } else if days < warn_days {
            out.push(format!(
                "the {what} expires in {days} days ({}): {}",
                crate::window::format_utc(at),
                if what.starts_with("refresh") {
                    "run a pipeline (any call refreshes it) or reconnect"
                } else {
                    "reconnect with `qb-backfill auth connect` before then"
                }
            ));
        }
    }
    out
}

/// Logs a warning when one of `realm_id`'s expiries is under [`EXPIRY_WARNING_DAYS`] away,
/// or when the company was connected with another app than `client_id` (its token then
/// refreshes only with that app's credentials). Every run calls it; a store that cannot say
/// is not an error.
pub async fn warn_expiring(store: &dyn TokenStore, realm_id: &str, client_id: &str) -> Vec<String> {
    let now = OffsetDateTime::now_utc();
    let Ok(facts) = store.metadata(Some(realm_id)).await else {
        return Vec::new();
    };
    let mut all = Vec::new();
    for m in &facts {
        if let Some(connected_with) = m.client_id.as_deref().filter(|c| *c != client_id) {
            let w = format!(
                "company {realm_id} was connected with app {connected_with}, not QBO_CLIENT_ID \
                 {client_id}: set that app's QBO_CLIENT_ID and QBO_CLIENT_SECRET[_FILE] for it"
            );
            tracing::warn!(realm = realm_id, warning = %w, "token_app_mismatch");
            all.push(w);
        }
        for w in expiry_warnings(m, now, EXPIRY_WARNING_DAYS) {
            tracing::warn!(realm = realm_id, warning = %w, "token_expiry_near");
            all.push(w);
        }
    }
    all
}

async fn status(args: &StatusArgs) -> Result<ExitStatus, Error> {
    let check_realm = args.realm.clone().unwrap_or_else(|| "status".to_owned());
    let opened = open_store(&args.token_store, &check_realm).await?;
    let facts = opened
        .store
        .metadata(args.realm.as_deref())
        .await
        .map_err(Error::TokenStore)?;
    if facts.is_empty() {
        println!(
            "No company is connected in {}{}: connect one with `qb-backfill auth connect`.",
            opened.what,
            args.realm
                .as_deref()
                .map(|r| format!(" for realm {r}"))
                .unwrap_or_default()
        );
        return Ok(ExitStatus::Auth);
    }
    let now = OffsetDateTime::now_utc();
    let mut worst = ExitStatus::Success;
    for m in &facts {
        println!(
            "realm {}  company {}  app {}",
            m.realm_id,
            m.company_name.as_deref().unwrap_or("-"),
            m.client_id.as_deref().unwrap_or("-")
        );
        println!(
            "  connected {}  rotated {}  last success {}",
            fmt_time(m.connected_at),
            fmt_time(m.rotated_at),
            fmt_time(m.last_success_at)
        );
        let left = |t: Option<OffsetDateTime>| {
            t.map_or_else(
                || "unknown".to_owned(),
                |t| {
                    format!(
                        "{} ({} days)",
                        crate::window::format_utc(t),
                        days_until(t, now)
                    )
                },
            )
        };
        println!(
            "  refresh token expires {}  hard expiry {}",
            left(m.refresh_expires_at),
            left(m.hard_expires_at)
        );
        let expired = m.next_expiry().is_some_and(|t| t <= now);
        if !m.has_token || expired {
            println!("  ERROR: no usable token: reconnect with `qb-backfill auth connect`");
            worst = ExitStatus::Auth;
            continue;
        }
        for w in expiry_warnings(m, now, args.warn_days) {
            println!("  WARNING: {w}");
            tracing::warn!(realm = m.realm_id.as_str(), warning = %w, "token_expiry_near");
            if worst == ExitStatus::Success {
                worst = ExitStatus::WindowsFailed;
            }
        }
    }
    Ok(worst)
}

async fn revoke(args: &RealmArgs, offboard: bool) -> Result<ExitStatus, Error> {
    let realm = args.realm.trim();
    let opened = open_store(&args.token_store, realm).await?;
    let token: Option<SecretString> = opened.store.load(realm).await.map_err(Error::TokenStore)?;
    let Some(token) = token else {
        if offboard {
            let removed = opened
                .store
                .remove(realm)
                .await
                .map_err(Error::TokenStore)?;
            println!(
                "No token was stored for realm {realm}{}.",
                if removed {
                    "; its facts were removed"
                } else {
                    ""
                }
            );
            print_offboarding(realm);
            return Ok(ExitStatus::Success);
        }
        return Err(Error::Usage(format!(
            "no token is stored for realm {realm} in {}: nothing to revoke (see `qb-backfill auth status`)",
            opened.what
        )));
    };
    // The grant is revoked by the app it was given to, the one the store recorded.
    let connected_with = opened
        .store
        .metadata(Some(realm))
        .await
        .map_err(Error::TokenStore)?
        .into_iter()
        .next()
        .and_then(|m| m.client_id);
    let app = super::apps::oauth_app(connected_with.as_deref(), Some(realm))?;
    match app.revoke(&token).await {
        Ok(()) => {}
        // Offboarding goes on when Intuit already forgot the grant.
        Err(QboError::Auth(AuthError::Refused { .. })) if offboard => {
            tracing::warn!(realm, "revoke_refused_offboarding_anyway");
        }
        Err(e) => return Err(connect_error(e)),
    }
    let removed = opened
        .store
        .remove(realm)
        .await
        .map_err(Error::TokenStore)?;
    tracing::info!(
        realm,
        removed,
        client_id = app.client_id(),
        "company_revoked"
    );
    println!(
        "Revoked the connection of realm {realm} at Intuit (app {}) and removed its token from \
         {}. Runs for it now exit 3 until it is connected again (`qb-backfill auth connect`).",
        app.client_id(),
        opened.what
    );
    if offboard {
        print_offboarding(realm);
    }
    Ok(ExitStatus::Success)
}

fn print_offboarding(realm: &str) {
    println!(
        "Offboarding realm {realm}: its raw rows and ledger stay until you delete them, e.g.\n  \
         DELETE FROM raw.qb_customers WHERE realm_id = '{realm}';  -- and every raw.qb_* table\n  \
         DELETE FROM backfill.windows WHERE realm_id = '{realm}';\n\
         Remove the company's app secret (QBO_CLIENT_SECRET[_FILE], or its entry in QBO_APPS_FILE) if its app served only it. \
         See docs/RUNBOOK.md (disconnecting a company)."
    );
}

/// Parses the `--token-store` text (for the tests of this module).
#[cfg(test)]
fn spec(s: &str) -> TokenStoreSpec {
    s.parse().unwrap_or(TokenStoreSpec::Db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use time::macros::datetime;

    #[test]
    fn warnings_under_the_threshold_and_past_expiries() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let mut m = TokenMetadata::new("1");
        m.refresh_expires_at = Some(datetime!(2026-03-01 00:00 UTC));
        m.hard_expires_at = Some(datetime!(2030-01-01 00:00 UTC));
        assert!(expiry_warnings(&m, now, 30).is_empty());
        m.refresh_expires_at = Some(datetime!(2026-01-11 00:00 UTC));
        let w = expiry_warnings(&m, now, 30);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("in 10 days"), "{w:?}");
        m.hard_expires_at = Some(datetime!(2025-12-31 00:00 UTC));
        let w = expiry_warnings(&m, now, 30);
        assert!(w[1].contains("passed"), "{w:?}");
    }

    #[test]
    fn loopback_redirects_are_served_others_need_paste() {
        let u = |s: &str| Url::parse(s).unwrap();
        let (addr, path) = loopback(&u("http://localhost:8765/callback")).unwrap();
        assert_eq!((addr.port(), path.as_str()), (8765, "/callback"));
        assert!(addr.ip().is_loopback());
        assert!(loopback(&u("https://localhost:8765/callback")).is_none());
        assert!(loopback(&u("http://example.com:8765/callback")).is_none());
        assert_eq!(spec("file:/x"), TokenStoreSpec::File(PathBuf::from("/x")));
    }
}
