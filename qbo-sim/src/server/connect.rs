//! Connecting a company: Intuit's consent page (`GET /connect/oauth2`, answered by the
//! scripted [`Consent`](crate::Consent) instead of a person) and the revoke endpoint
//! (`POST /v2/oauth2/tokens/revoke`). The code exchange is in `oauth.rs`, beside the refresh.
//!
//! Like Intuit, the consent page never redirects to a URI that is not registered for the app
//! (it shows an error page instead), and an approved redirect carries `code`, `state` and
//! `realmId`; a denied one `error=access_denied` and `state`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::oauth::{client_ok, form_pairs, no_store, oauth_error, presented_client_id};
use super::respond;
use super::{Shared, Tag, lock, tagged};
use crate::config::Consent;

/// The scope a QuickBooks Online accounting app asks for.
const ACCOUNTING_SCOPE: &str = "com.intuit.quickbooks.accounting";

fn error_page(status: StatusCode, message: &str) -> Response {
    let mut body =
        String::from("<!doctype html><title>Intuit</title><h1>Something went wrong</h1><p>");
    for c in message.chars() {
        match c {
            '<' => body.push_str("&lt;"),
            '>' => body.push_str("&gt;"),
            '&' => body.push_str("&amp;"),
            c => body.push(c),
        }
    }
    body.push_str("</p>");
    respond::full(status, "text/html; charset=utf-8", body)
}

/// Percent-encodes a query value (unreserved characters kept).
fn encode(out: &mut String, v: &str) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
}

/// `redirect_uri` with `pairs` appended to its query.
fn redirect_to(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let mut url = redirect_uri.to_string();
    url.push(if url.contains('?') { '&' } else { '?' });
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        url.push_str(k);
        url.push('=');
        encode(&mut url, v);
    }
    let mut r = respond::full(StatusCode::FOUND, "text/plain", String::new());
    if let Ok(v) = HeaderValue::from_str(&url) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    no_store(r)
}

/// Whether `uri` is registered for the app: one of the configured URIs, or with none
/// configured, any plain-http loopback URI (what Intuit's development keys allow).
fn registered(uris: &[String], uri: &str) -> bool {
    if uris.is_empty() {
        return [
            "http://localhost:",
            "http://127.0.0.1:",
            "http://localhost/",
            "http://127.0.0.1/",
        ]
        .iter()
        .any(|p| uri.starts_with(p));
    }
    uris.iter().any(|u| u == uri)
}

/// The consent page.
pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let tag = Tag::new("authorize");
    let s = shared.settings();
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) = get("client_id").filter(|id| shared.knows_app(id)) else {
        return tagged(
            error_page(StatusCode::BAD_REQUEST, "invalid_client: unknown client_id"),
            tag,
        );
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return tagged(
            error_page(StatusCode::BAD_REQUEST, "redirect_uri is required"),
            tag,
        );
    };
    if !registered(&s.redirect_uris, redirect_uri) {
        return tagged(
            error_page(
                StatusCode::BAD_REQUEST,
                "The redirect_uri query parameter value is invalid. Make sure it is listed in the \
                 Redirect URIs section on your app's keys tab and matches it exactly.",
            ),
            tag,
        );
    }
    let state = get("state").unwrap_or_default();
    if get("response_type") != Some("code") {
        return tagged(
            redirect_to(
                redirect_uri,
                &[("error", "unsupported_response_type"), ("state", state)],
            ),
            tag,
        );
    }
    if !get("scope").is_some_and(|sc| sc.split(' ').any(|x| x == ACCOUNTING_SCOPE)) {
        return tagged(
            redirect_to(
                redirect_uri,
                &[("error", "invalid_scope"), ("state", state)],
            ),
            tag,
        );
    }
    let realm = match &s.consent {
        Consent::Deny => {
            lock(&shared.stats).stats.denials += 1;
            return tagged(
                redirect_to(
                    redirect_uri,
                    &[("error", "access_denied"), ("state", state)],
                ),
                tag,
            );
        }
        Consent::Approve => shared.realms.first().map(|r| r.id.clone()),
        Consent::ApproveRealm(r) => shared.realm(r).map(|r| r.id.clone()),
    };
    let Some(realm) = realm else {
        return tagged(
            error_page(StatusCode::BAD_REQUEST, "the chosen company does not exist"),
            tag,
        );
    };
    let now = tokio::time::Instant::now().into_std();
    let code = lock(&shared.tokens).issue_code(&realm, redirect_uri, client_id, now);
    lock(&shared.stats).stats.authorizations += 1;
    let mut tag = tag;
    tag.realm = Some(realm.clone());
    tagged(
        redirect_to(
            redirect_uri,
            &[("code", &code), ("state", state), ("realmId", &realm)],
        ),
        tag,
    )
}

/// The revoke endpoint: client authentication as for the token endpoint, the token as JSON
/// (`{"token": "…"}`, as Intuit documents) or as a form field. Revoking either token of a
/// grant ends the grant; a token never issued is answered 200 too (RFC 7009).
pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let tag = Tag::new("revoke");
    let s = shared.settings();
    shared.latency(&s).await;
    let form = form_pairs(&body);
    if !client_ok(&shared, &headers, &form) {
        let status = StatusCode::from_u16(s.quirks.invalid_client_status)
            .unwrap_or(StatusCode::UNAUTHORIZED);
        return tagged(oauth_error(status, "invalid_client", None), tag);
    }
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_owned))
        .or_else(|| {
            form.iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.clone())
        })
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return tagged(
            oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                Some("token is required"),
            ),
            tag,
        );
    };
    let mut tag = tag;
    let client_id = presented_client_id(&headers, &form).unwrap_or_default();
    match lock(&shared.tokens).revoke(&token, &client_id) {
        Ok(Some(realm)) => {
            let mut stats = lock(&shared.stats);
            stats.stats.revocations += 1;
            *stats
                .stats
                .revocations_by_client
                .entry(client_id)
                .or_default() += 1;
            tag.realm = Some(realm);
        }
        Ok(None) => {}
        Err(realm) => {
            tag.realm = Some(realm);
            return tagged(
                oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    Some("the token was issued to another client"),
                ),
                tag,
            );
        }
    }
    tagged(
        no_store(respond::full(
            StatusCode::OK,
            "application/json",
            String::new(),
        )),
        tag,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_uris_are_registered_unless_a_list_is_given() {
        assert!(registered(&[], "http://localhost:8765/callback"));
        assert!(registered(&[], "http://127.0.0.1:1/cb"));
        assert!(!registered(&[], "https://example.com/cb"));
        let list = vec!["https://example.com/cb".to_string()];
        assert!(registered(&list, "https://example.com/cb"));
        assert!(!registered(&list, "http://localhost:8765/callback"));
    }

    #[test]
    fn redirect_values_are_encoded() {
        let r = redirect_to(
            "http://localhost:1/cb?x=1",
            &[("state", "a b&c"), ("code", "Z")],
        );
        let loc = r.headers().get(header::LOCATION).unwrap().to_str().unwrap();
        assert_eq!(loc, "http://localhost:1/cb?x=1&state=a%20b%26c&code=Z");
    }
}
