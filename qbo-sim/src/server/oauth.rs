//! `POST /oauth2/v1/tokens/bearer`: the refresh-token and authorization-code grants, client
//! credentials by Basic header or in the form body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;

use super::respond::{self, JSON};
use super::{Shared, Tag, lock, tagged};
use crate::config::{Quirks, ScriptedFault};
use crate::data::{js, push_u64};
use crate::tokens::CodeRefusal;

pub(super) fn oauth_error(status: StatusCode, error: &str, description: Option<&str>) -> Response {
    let mut s = String::from("{\"error\":");
    js(&mut s, error);
    if let Some(d) = description {
        s.push_str(",\"error_description\":");
        js(&mut s, d);
    }
    s.push('}');
    no_store(respond::full(status, JSON, s))
}

pub(super) fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    r.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn invalid_grant(q: &Quirks, status: StatusCode) -> Response {
    let desc = q
        .invalid_grant_description
        .then_some("Incorrect or invalid refresh token");
    oauth_error(status, "invalid_grant", desc)
}

/// Client authentication, either of the two methods Intuit's discovery document lists:
/// HTTP Basic (`client_secret_basic`) or `client_id` and `client_secret` form fields
/// (`client_secret_post`, how Airbyte's and Singer's connectors refresh). A Basic header, when
/// present, decides alone.
pub(super) fn client_ok(shared: &Shared, headers: &HeaderMap, form: &[(String, String)]) -> bool {
    let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    else {
        let field = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        return match (field("client_id"), field("client_secret")) {
            (Some(id), Some(secret)) => shared.app_ok(id, secret),
            _ => false,
        };
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    match text.split_once(':') {
        Some((id, secret)) => shared.app_ok(id, secret),
        None => false,
    }
}

/// The client id a request authenticated with (Basic header first, else the form field).
pub(super) fn presented_client_id(
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Option<String> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(id, _)| id.to_string());
    }
    form.iter()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.clone())
}

/// Parses `application/x-www-form-urlencoded` pairs.
pub(super) fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    fn hexval(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match (hexval(bytes[i + 1]), hexval(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(h * 16 + l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The token endpoint.
pub(crate) async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tag = Tag::new("token");
    let s = shared.settings();
    shared.latency(&s).await;
    let scripted = lock(&shared.token_script).pop_front();
    let mut tag = tag;
    let mut body_fault = None;
    if let Some(f) = scripted {
        if f != ScriptedFault::Pass {
            lock(&shared.stats).stats.faults_injected += 1;
            tag.fault = Some(f.label());
        }
        match f {
            ScriptedFault::Pass => {}
            ScriptedFault::Throttle => {
                let r = oauth_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded", None);
                return tagged(r, tag);
            }
            ScriptedFault::Status(code) => {
                return tagged(respond::injected_status(code, true), tag);
            }
            ScriptedFault::FaultWith200 => {
                return tagged(invalid_grant(&s.quirks, StatusCode::OK), tag);
            }
            ScriptedFault::ExpiredToken => {
                return tagged(invalid_grant(&s.quirks, StatusCode::BAD_REQUEST), tag);
            }
            // The API gateway's recorded faults, sent as they are.
            ScriptedFault::InternalError3100
            | ScriptedFault::Forbidden3100
            | ScriptedFault::Throttle403
            | ScriptedFault::NoSubscriptionAccess
            | ScriptedFault::RealmMismatch => {
                if let Some(r) = respond::recorded_fault(f) {
                    return tagged(r, tag);
                }
            }
            ScriptedFault::Slow(d) => tokio::time::sleep(d).await,
            ScriptedFault::DropConnection | ScriptedFault::MalformedJson => body_fault = Some(f),
        }
    }
    let failed = |shared: &Shared| lock(&shared.stats).stats.token_failures += 1;
    let pairs = form_pairs(&body);
    if !client_ok(&shared, &headers, &pairs) {
        failed(&shared);
        let status = StatusCode::from_u16(s.quirks.invalid_client_status)
            .unwrap_or(StatusCode::UNAUTHORIZED);
        return tagged(oauth_error(status, "invalid_client", None), tag);
    }
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let now = tokio::time::Instant::now().into_std();
    let grant = match get("grant_type") {
        Some("refresh_token") => {
            let Some(presented) = get("refresh_token").filter(|t| !t.is_empty()) else {
                failed(&shared);
                return tagged(
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        Some("refresh_token is required"),
                    ),
                    tag,
                );
            };
            let client_id = presented_client_id(&headers, &pairs).unwrap_or_default();
            let result = lock(&shared.tokens).refresh(presented, &client_id, s.token, now);
            match result {
                Ok(g) => g,
                Err(why) => {
                    failed(&shared);
                    tracing::debug!(reason = ?why, "refresh refused");
                    return tagged(invalid_grant(&s.quirks, StatusCode::BAD_REQUEST), tag);
                }
            }
        }
        Some("authorization_code") => {
            let (Some(code), Some(redirect_uri)) = (
                get("code").filter(|c| !c.is_empty()),
                get("redirect_uri").filter(|r| !r.is_empty()),
            ) else {
                failed(&shared);
                return tagged(
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_request",
                        Some("code and redirect_uri are required"),
                    ),
                    tag,
                );
            };
            let client_id = presented_client_id(&headers, &pairs).unwrap_or_default();
            let result =
                lock(&shared.tokens).redeem_code(code, redirect_uri, &client_id, s.token, now);
            match result {
                Ok(g) => {
                    lock(&shared.stats).stats.code_exchanges += 1;
                    g
                }
                Err(why) => {
                    failed(&shared);
                    tracing::debug!(reason = ?why, "authorization code refused");
                    let desc = match why {
                        CodeRefusal::RedirectMismatch => {
                            "redirect_uri does not match the one the code was issued for"
                        }
                        _ => "Invalid or expired authorization code",
                    };
                    return tagged(
                        oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", Some(desc)),
                        tag,
                    );
                }
            }
        }
        Some(_) => {
            failed(&shared);
            return tagged(
                oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", None),
                tag,
            );
        }
        None => {
            failed(&shared);
            return tagged(
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    Some("grant_type is required"),
                ),
                tag,
            );
        }
    };
    {
        let mut st = lock(&shared.stats);
        if get("grant_type") == Some("refresh_token") {
            st.stats.token_refreshes += 1;
            if grant.rotated {
                st.stats.token_rotations += 1;
            }
        }
    }
    let hard = headers
        .get("x-include-refresh-token-hard-expires-in")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut b = String::with_capacity(1200);
    b.push_str("{\"x_refresh_token_expires_in\":");
    push_u64(&mut b, grant.refresh_expires_in);
    if hard {
        // Intuit's clients spell the 5-year cap two ways; the quirk picks one.
        b.push_str(if s.quirks.hard_expiry_lifetime_spelling {
            ",\"x_refresh_token_lifetime_expires_in\":"
        } else {
            ",\"x_refresh_token_hard_expires_in\":"
        });
        push_u64(&mut b, grant.hard_expires_in);
    }
    b.push_str(",\"refresh_token\":");
    js(&mut b, &grant.refresh_token);
    b.push_str(",\"access_token\":");
    js(&mut b, &grant.access_token);
    b.push_str(",\"token_type\":\"bearer\",\"expires_in\":");
    push_u64(&mut b, grant.expires_in);
    b.push('}');
    let r = match body_fault {
        Some(ScriptedFault::DropConnection) => respond::dropped(StatusCode::OK, JSON, b),
        Some(ScriptedFault::MalformedJson) => respond::malformed(JSON, b),
        _ => respond::full(StatusCode::OK, JSON, b),
    };
    tagged(no_store(r), tag)
}

/// `GET /.well-known/openid_configuration` (and `openid_sandbox_configuration`): the
/// discovery document Intuit publishes for its OAuth endpoints, with this simulator's token
/// endpoint in it, so a client that finds its endpoints by discovery (Intuit's own
/// `intuit-oauth` SDK takes a discovery URL as its `environment`) can be pointed here.
/// The other endpoints it names are not served (the authorization-code flow is not modelled).
pub(crate) async fn discovery(headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("127.0.0.1");
    let base = format!("http://{host}");
    let mut s = String::from("{\"issuer\":");
    js(&mut s, "https://oauth.platform.intuit.com/op/v1");
    for (key, path) in [
        ("authorization_endpoint", "/connect/oauth2"),
        ("token_endpoint", "/oauth2/v1/tokens/bearer"),
        ("userinfo_endpoint", "/v1/openid_connect/userinfo"),
        ("revocation_endpoint", "/v2/oauth2/tokens/revoke"),
        ("jwks_uri", "/op/v1/jwks"),
    ] {
        s.push_str(",\"");
        s.push_str(key);
        s.push_str("\":");
        js(&mut s, &format!("{base}{path}"));
    }
    s.push_str(
        ",\"response_types_supported\":[\"code\"],\"grant_types_supported\":[\"authorization_code\",\"refresh_token\"],\"token_endpoint_auth_methods_supported\":[\"client_secret_post\",\"client_secret_basic\"],\"scopes_supported\":[\"openid\",\"email\",\"profile\",\"address\",\"phone\",\"com.intuit.quickbooks.accounting\",\"com.intuit.quickbooks.payment\"]}",
    );
    tagged(
        respond::full(StatusCode::OK, JSON, s),
        Tag::new("discovery"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let p = form_pairs(b"grant_type=refresh_token&refresh_token=AB11%2Bx%3D%3D+y&empty=");
        assert_eq!(p[0], ("grant_type".into(), "refresh_token".into()));
        assert_eq!(p[1], ("refresh_token".into(), "AB11+x== y".into()));
        assert_eq!(p[2], ("empty".into(), String::new()));
        let p = form_pairs(b"a=%4");
        assert_eq!(p[0].1, "%4");
    }
}
