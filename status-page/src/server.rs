//! The HTTP server: `GET /` and `GET /metrics`, read-only, behind the access rule.
//!
//! Invariant: loopback unless configured. A non-loopback address is refused without an access
//! token; with one, every request must carry `Authorization: Bearer <token>` (compared in
//! constant time) or gets 401.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use raw_sink::Sink;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::snapshot::{Scope, Snapshot};
use crate::{StatusError, html, metrics};

/// The default address: loopback, port 8080.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Where to listen and how to let requests in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeConfig {
    /// The address.
    pub listen: SocketAddr,
    /// A file holding the access token (required for a non-loopback address).
    pub auth_token_file: Option<PathBuf>,
}

impl ServeConfig {
    /// [`DEFAULT_LISTEN`], no token.
    #[must_use]
    pub fn loopback_default() -> Self {
        ServeConfig {
            listen: DEFAULT_LISTEN,
            auth_token_file: None,
        }
    }
}

/// Who may read the page: anyone who reaches a loopback address, or holders of the token.
#[derive(Clone)]
pub struct Access {
    token: Option<Arc<SecretString>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Access {
    /// The access rule for `listen`: the token read from `token_file` when given (surrounding
    /// whitespace trimmed); without one, only a loopback address is allowed.
    ///
    /// # Errors
    /// [`StatusError::NonLoopbackWithoutToken`], [`StatusError::TokenFile`],
    /// [`StatusError::EmptyToken`].
    pub fn for_listen(
        listen: SocketAddr,
        token_file: Option<&Path>,
    ) -> Result<Access, StatusError> {
        let token = match token_file {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| StatusError::TokenFile {
                        path: path.to_path_buf(),
                        source,
                    })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(StatusError::EmptyToken {
                        path: path.to_path_buf(),
                    });
                }
                Some(Arc::new(SecretString::from(token.to_owned())))
            }
            None if listen.ip().is_loopback() => None,
            None => return Err(StatusError::NonLoopbackWithoutToken { addr: listen }),
        };
        Ok(Access { token })
    }

    /// Whether a request with this `Authorization` header may pass.
    fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = authorization.and_then(|v| v.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        given.ct_eq(token.expose_secret().as_bytes()).into()
    }
}

struct AppState {
    sink: Sink,
    scope: Scope,
}

async fn page(State(state): State<Arc<AppState>>) -> Response {
    match Snapshot::load(&state.sink, &state.scope).await {
        Ok(snap) => Html(html::render_page(&snap)).into_response(),
        Err(e) => unavailable(&e),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    match metrics::exposition(&state.sink, &state.scope).await {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &StatusError) -> Response {
    let chain = error_chain(e);
    tracing::warn!(error = %chain, "status_page_unavailable");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the ledger cannot be read: {chain}\n"),
    )
        .into_response()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

async fn guard(State(access): State<Access>, req: Request, next: Next) -> Response {
    if access.allows(req.headers().get(header::AUTHORIZATION)) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "an access token is required: Authorization: Bearer <token>\n",
        )
            .into_response()
    }
}

/// The routes (`GET /`, `GET /metrics`) behind `access`.
pub fn router(sink: Sink, scope: Scope, access: Access) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(AppState { sink, scope }))
        .layer(middleware::from_fn_with_state(access, guard))
}

/// A bound server, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    local: SocketAddr,
}

impl Server {
    /// The address bound (with the real port when 0 was asked for).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` completes.
    ///
    /// # Errors
    /// [`StatusError::Serve`].
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StatusError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(StatusError::Serve)
    }
}

/// Binds `listen` for the page of `scope`. The caller builds `access` with
/// [`Access::for_listen`] for the same address, which is where a non-loopback address without
/// a token is refused.
///
/// # Errors
/// [`StatusError::Bind`].
pub async fn bind(
    listen: SocketAddr,
    sink: Sink,
    scope: Scope,
    access: Access,
) -> Result<Server, StatusError> {
    let bind_err = |source| StatusError::Bind {
        addr: listen,
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok(Server {
        listener,
        router: router(sink, scope, access),
        local,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn non_loopback_needs_a_token() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let err = Access::for_listen(public, None).unwrap_err();
        assert!(matches!(err, StatusError::NonLoopbackWithoutToken { .. }));
        assert!(err.is_config() && err.to_string().contains("--auth-token-file"));
        let v6: SocketAddr = "[::]:8080".parse().unwrap();
        assert!(Access::for_listen(v6, None).is_err());
        assert!(Access::for_listen(DEFAULT_LISTEN, None).is_ok());
        assert!(Access::for_listen("[::1]:9".parse().unwrap(), None).is_ok());
    }

    #[test]
    fn token_is_checked_and_never_printed() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "s3cret-token").unwrap();
        let access = Access::for_listen("0.0.0.0:1".parse().unwrap(), Some(f.path())).unwrap();
        assert!(!format!("{access:?}").contains("s3cret"));
        let ok = HeaderValue::from_static("Bearer s3cret-token");
        assert!(access.allows(Some(&ok)));
        for bad in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "s3cret-token",
            "Basic s3cret-token",
        ] {
            assert!(
                !access.allows(Some(&HeaderValue::from_static(bad))),
                "{bad}"
            );
        }
        assert!(!access.allows(None));
        let empty = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            Access::for_listen(DEFAULT_LISTEN, Some(empty.path())),
            Err(StatusError::EmptyToken { .. })
        ));
    }
}
