//! The token endpoint: one grant posted (a refresh token, or an authorization code from the
//! consent page), its answer classified (granted, refused for good, worth a retry), and the
//! refresh's retry loop around it.

use reqwest::Url;
use reqwest::header::ACCEPT;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::TokenProvider;
use crate::error::{AuthError, Endpoint, QboError};
use crate::fault::trim_start;
use crate::http::{intuit_tid_of, retry_after_of};
use crate::retry::{Decision, FailureClass, RetryState, past_horizon};

/// What the token endpoint granted.
pub(super) struct Granted {
    pub(super) access_token: SecretString,
    pub(super) refresh_token: Option<SecretString>,
    pub(super) expires_in: u64,
    pub(super) refresh_expires_in: Option<u64>,
    /// The 5-year cap, under either of the names Intuit's clients read.
    pub(super) refresh_hard_expires_in: Option<u64>,
    /// When the request was sent: the server's clock for `expires_in` started no earlier.
    pub(super) requested_at: Instant,
}

pub(super) enum RefreshFailure {
    InvalidGrant(AuthError),
    Other(QboError),
}

pub(super) enum Once {
    InvalidGrant(AuthError),
    Fatal(QboError),
    Transient(FailureClass, QboError),
}

#[derive(Deserialize)]
struct TokenBody {
    #[serde(default)]
    access_token: Option<SecretString>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    x_refresh_token_expires_in: Option<u64>,
    #[serde(default)]
    x_refresh_token_hard_expires_in: Option<u64>,
    #[serde(default)]
    x_refresh_token_lifetime_expires_in: Option<u64>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl TokenProvider {
    pub(super) async fn call_endpoint(
        &self,
        refresh_token: &SecretString,
    ) -> Result<Granted, RefreshFailure> {
        let mut history = RetryState::new();
        loop {
            match self.post_once(refresh_token).await {
                Ok(g) => {
                    self.s.outage.succeeded();
                    return Ok(g);
                }
                Err(Once::InvalidGrant(e)) => return Err(RefreshFailure::InvalidGrant(e)),
                Err(Once::Fatal(e)) => return Err(RefreshFailure::Other(e)),
                Err(Once::Transient(class, e)) => {
                    let troubled_for = self.s.outage.failed();
                    let wait = match history.failed(&self.s.retry, class) {
                        Decision::RetryAfter(wait)
                            if !past_horizon(&self.s.retry, troubled_for, wait) =>
                        {
                            wait
                        }
                        decision => {
                            return Err(RefreshFailure::Other(crate::error::gave_up(
                                history.attempts(),
                                troubled_for,
                                matches!(decision, Decision::RetryAfter(_)),
                                e,
                            )));
                        }
                    };
                    tracing::warn!(
                        realm = self.s.realm_id.as_str(),
                        endpoint = "token",
                        cause = class.as_str(),
                        attempt = history.attempts(),
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        intuit_tid = e.intuit_tid(),
                        "retry"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn post_once(&self, refresh_token: &SecretString) -> Result<Granted, Once> {
        let app = App {
            http: &self.s.http,
            token_url: &self.s.token_url,
            client_id: &self.s.client_id,
            client_secret: &self.s.client_secret,
        };
        post_grant(app, Grant::Refresh(refresh_token)).await
    }
}

/// The app that authenticates to the token endpoint.
#[derive(Clone, Copy)]
pub(super) struct App<'a> {
    pub(super) http: &'a reqwest::Client,
    pub(super) token_url: &'a Url,
    pub(super) client_id: &'a str,
    pub(super) client_secret: &'a SecretString,
}

/// What is exchanged for an access token.
#[derive(Clone, Copy)]
pub(super) enum Grant<'a> {
    /// `grant_type=refresh_token`.
    Refresh(&'a SecretString),
    /// `grant_type=authorization_code`, with the redirect URI the consent page was opened with.
    Code {
        code: &'a SecretString,
        redirect_uri: &'a str,
    },
}

/// Posts one grant and classifies the answer. `invalid_grant` is [`Once::InvalidGrant`]
/// whatever was exchanged; the caller words it.
pub(super) async fn post_grant(app: App<'_>, grant: Grant<'_>) -> Result<Granted, Once> {
    let endpoint = Endpoint::Token;
    let requested_at = Instant::now();
    let form: [(&str, &str); 3] = match grant {
        Grant::Refresh(t) => [
            ("grant_type", "refresh_token"),
            ("refresh_token", t.expose_secret()),
            ("", ""),
        ],
        Grant::Code { code, redirect_uri } => [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
        ],
    };
    let form: Vec<(&str, &str)> = form.into_iter().filter(|(k, _)| !k.is_empty()).collect();
    let sent = app
        .http
        .post(app.token_url.clone())
        .basic_auth(app.client_id, Some(app.client_secret.expose_secret()))
        .header(ACCEPT, "application/json")
        .header("x-include-refresh-token-hard-expires-in", "true")
        .form(&form)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Err(Once::Transient(
                FailureClass::Timeout,
                QboError::Timeout {
                    endpoint,
                    intuit_tid: None,
                },
            ));
        }
        Err(e) => {
            return Err(Once::Transient(
                FailureClass::Connection,
                QboError::Connection {
                    endpoint,
                    source: e,
                },
            ));
        }
    };
    let status = resp.status().as_u16();
    let intuit_tid = intuit_tid_of(resp.headers());
    let retry_after = retry_after_of(resp.headers());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            let (class, err) = if e.is_timeout() {
                (
                    FailureClass::Timeout,
                    QboError::Timeout {
                        endpoint,
                        intuit_tid,
                    },
                )
            } else {
                (
                    FailureClass::TruncatedBody,
                    QboError::TruncatedBody {
                        endpoint,
                        intuit_tid,
                    },
                )
            };
            return Err(Once::Transient(class, err));
        }
    };
    // Like the API path: a UTF-8 byte-order mark or leading whitespace is not the body.
    let parsed: Result<TokenBody, serde_json::Error> = serde_json::from_slice(trim_start(&body));
    if let Ok(TokenBody {
        error: Some(error),
        error_description: description,
        ..
    }) = &parsed
    {
        let description = description.clone();
        return Err(match error.as_str() {
            "invalid_grant" => Once::InvalidGrant(AuthError::InvalidGrant {
                description,
                intuit_tid,
            }),
            "invalid_client" => Once::Fatal(QboError::Auth(AuthError::InvalidClient {
                description,
                status,
                intuit_tid,
            })),
            _ if status == 429 || status >= 500 => {
                let class = FailureClass::from_status(status, None, retry_after);
                Once::Transient(
                    class,
                    QboError::Http {
                        endpoint,
                        status,
                        class,
                        retry_after,
                        intuit_tid,
                        body: Some(error.clone()),
                    },
                )
            }
            _ => Once::Fatal(QboError::Auth(AuthError::Refused {
                error: error.clone(),
                description,
                status,
                intuit_tid,
            })),
        });
    }
    if (200..300).contains(&status) {
        return match parsed {
            Ok(TokenBody {
                access_token: Some(access_token),
                expires_in: Some(expires_in),
                refresh_token,
                x_refresh_token_expires_in,
                x_refresh_token_hard_expires_in,
                x_refresh_token_lifetime_expires_in,
                ..
            }) => Ok(Granted {
                access_token,
                refresh_token,
                expires_in,
                refresh_expires_in: x_refresh_token_expires_in,
                refresh_hard_expires_in: x_refresh_token_hard_expires_in
                    .or(x_refresh_token_lifetime_expires_in),
                requested_at,
            }),
            Ok(_) => Err(Once::Fatal(QboError::Malformed {
                endpoint,
                detail: "no access_token or expires_in in the token response".into(),
                class: FailureClass::Rejected,
                intuit_tid,
            })),
            // serde's messages are left out: they could quote a token.
            Err(e) if e.is_data() => Err(Once::Fatal(QboError::Malformed {
                endpoint,
                detail: format!(
                    "unexpected token response shape (line {}, column {})",
                    e.line(),
                    e.column()
                ),
                class: FailureClass::Rejected,
                intuit_tid,
            })),
            Err(e) if e.is_eof() => Err(Once::Transient(
                FailureClass::TruncatedBody,
                QboError::TruncatedBody {
                    endpoint,
                    intuit_tid,
                },
            )),
            Err(e) => Err(Once::Transient(
                FailureClass::Malformed,
                QboError::Malformed {
                    endpoint,
                    detail: format!("not JSON (line {}, column {})", e.line(), e.column()),
                    class: FailureClass::Malformed,
                    intuit_tid,
                },
            )),
        };
    }
    if status == 401 {
        return Err(Once::Fatal(QboError::Auth(AuthError::InvalidClient {
            description: None,
            status,
            intuit_tid,
        })));
    }
    let class = FailureClass::from_status(status, None, retry_after);
    let err = QboError::Http {
        endpoint,
        status,
        class,
        retry_after,
        intuit_tid,
        body: None,
    };
    if class.is_transient() {
        Err(Once::Transient(class, err))
    } else {
        Err(Once::Fatal(err))
    }
}
