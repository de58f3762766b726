//! Connecting a company: the consent page, the code exchange, revoke.

use qbo_sim::{Consent, Quirks, SimHandle};

use crate::common::{Answer, answer, small};

const CB: &str = "http://localhost:8765/callback";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Opens the consent page; returns the status and the redirect's query pairs.
async fn consent(sim: &SimHandle, redirect_uri: &str, state: &str) -> (u16, Vec<(String, String)>) {
    let r = no_redirects()
        .get(sim.authorize_url())
        .query(&[
            ("client_id", sim.client_id().as_str()),
            ("response_type", "code"),
            ("scope", "com.intuit.quickbooks.accounting"),
            ("redirect_uri", redirect_uri),
            ("state", state),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let pairs = r
        .headers()
        .get("location")
        .map(|l| {
            let url = reqwest::Url::parse(l.to_str().unwrap()).unwrap();
            assert!(url.as_str().starts_with(redirect_uri), "{url}");
            url.query_pairs().into_owned().collect()
        })
        .unwrap_or_default();
    (status, pairs)
}

fn get<'a>(pairs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

async fn exchange(sim: &SimHandle, code: &str, redirect_uri: &str) -> Answer {
    let r = reqwest::Client::new()
        .post(sim.token_url())
        .basic_auth(sim.client_id(), Some(sim.client_secret()))
        .header("Accept", "application/json")
        .header("x-include-refresh-token-hard-expires-in", "true")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ])
        .send()
        .await
        .unwrap();
    answer(r).await
}

#[tokio::test]
async fn approve_redirects_with_code_state_and_realm_and_the_code_works_once() {
    let sim = small()
        .extra_realm("4620816365000000001", 5)
        .spawn()
        .await
        .unwrap();
    let (status, pairs) = consent(&sim, CB, "st4te").await;
    assert_eq!(status, 302);
    assert_eq!(get(&pairs, "state"), Some("st4te"));
    assert_eq!(get(&pairs, "realmId"), Some(sim.realm_id().as_str()));
    let code = get(&pairs, "code").unwrap().to_owned();
    // The redirect URI must be the one the code was issued for.
    let wrong = exchange(&sim, &code, "http://localhost:9/other").await;
    assert_eq!(
        (wrong.status, wrong.json()["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let a = exchange(&sim, &code, CB).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["x_refresh_token_expires_in"], 8_726_400);
    assert_eq!(v["x_refresh_token_hard_expires_in"], 5 * 365 * 86_400);
    assert_eq!(
        v["refresh_token"].as_str(),
        Some(sim.refresh_token().as_str())
    );
    let again = exchange(&sim, &code, CB).await;
    assert_eq!(again.status, 400);
    // Another company chosen on the page.
    sim.set_consent(Consent::ApproveRealm("4620816365000000001".into()));
    let (_, pairs) = consent(&sim, CB, "s2").await;
    assert_eq!(get(&pairs, "realmId"), Some("4620816365000000001"));
    let a = exchange(&sim, get(&pairs, "code").unwrap(), CB).await;
    assert_eq!(
        a.json()["refresh_token"].as_str(),
        sim.refresh_token_for("4620816365000000001").as_deref()
    );
    let st = sim.stats();
    assert_eq!(
        (st.authorizations, st.code_exchanges, st.token_refreshes),
        (2, 2, 0)
    );
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn denial_and_unregistered_redirects() {
    let sim = small()
        .redirect_uri(CB)
        .consent(Consent::Deny)
        .quirks(Quirks {
            hard_expiry_lifetime_spelling: true,
            ..Quirks::default()
        })
        .spawn()
        .await
        .unwrap();
    let (status, pairs) = consent(&sim, CB, "x").await;
    assert_eq!(status, 302);
    assert_eq!(get(&pairs, "error"), Some("access_denied"));
    assert_eq!(get(&pairs, "state"), Some("x"));
    assert_eq!(get(&pairs, "code"), None);
    // Not registered: an error page, never a redirect.
    let (status, pairs) = consent(&sim, "http://localhost:1/elsewhere", "x").await;
    assert_eq!((status, pairs.len()), (400, 0));
    sim.set_consent(Consent::Approve);
    let (_, pairs) = consent(&sim, CB, "y").await;
    let v = exchange(&sim, get(&pairs, "code").unwrap(), CB)
        .await
        .json();
    assert!(
        v["x_refresh_token_lifetime_expires_in"].as_u64().is_some(),
        "{v}"
    );
    assert!(v.get("x_refresh_token_hard_expires_in").is_none());
    assert_eq!(sim.stats().denials, 1);
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn revoke_ends_the_grant() {
    let sim = small().spawn().await.unwrap();
    let token = sim.refresh_token();
    let revoke = |body: serde_json::Value, secret: String| {
        let sim = sim.clone();
        async move {
            reqwest::Client::new()
                .post(sim.revoke_url())
                .basic_auth(sim.client_id(), Some(secret))
                .header("Accept", "application/json")
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        revoke(serde_json::json!({"token": token}), "wrong".into()).await,
        401
    );
    assert_eq!(
        revoke(serde_json::json!({}), sim.client_secret()).await,
        400
    );
    assert_eq!(
        revoke(serde_json::json!({"token": token}), sim.client_secret()).await,
        200
    );
    let r = reqwest::Client::new()
        .post(sim.token_url())
        .basic_auth(sim.client_id(), Some(sim.client_secret()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("invalid_grant"));
    assert_eq!(sim.stats().revocations, 1);
    sim.shutdown().await.unwrap();
}
