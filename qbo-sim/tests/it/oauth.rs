//! The token endpoint: grants, rotation modes, failures, quirks.

use std::time::Duration;

use base64::Engine as _;
use qbo_sim::{Quirks, Rotation, ScriptedFault, SimHandle};

use crate::common::{Answer, answer, small};

async fn refresh(sim: &SimHandle, token: &str) -> Answer {
    refresh_with(sim, &sim.client_id(), &sim.client_secret(), token, false).await
}

async fn refresh_with(sim: &SimHandle, id: &str, secret: &str, token: &str, hard: bool) -> Answer {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut req = reqwest::Client::new()
        .post(sim.token_url())
        .header("Authorization", format!("Basic {basic}"))
        .header("Accept", "application/json")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)]);
    if hard {
        req = req.header("x-include-refresh-token-hard-expires-in", "true");
    }
    answer(req.send().await.unwrap()).await
}

async fn query_status(sim: &SimHandle, access: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/v3/company/{}/query",
            sim.base_url(),
            sim.realm_id()
        ))
        .query(&[("query", "SELECT COUNT(*) FROM Customer")])
        .bearer_auth(access)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn grant_has_documented_fields_and_works() {
    let sim = small().spawn().await.unwrap();
    let first = sim.refresh_token();
    let a = refresh_with(&sim, &sim.client_id(), &sim.client_secret(), &first, true).await;
    assert_eq!(a.status, 200);
    assert!(a.header("intuit_tid").is_some());
    let v = a.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["x_refresh_token_expires_in"], 8_726_400);
    assert!(v["x_refresh_token_hard_expires_in"].as_u64().unwrap() > 157_000_000);
    let access = v["access_token"].as_str().unwrap();
    assert!(access.len() > 500);
    assert_eq!(query_status(&sim, access).await, 200);
    // Without the header there is no hard expiry.
    let v = refresh(&sim, v["refresh_token"].as_str().unwrap())
        .await
        .json();
    assert!(v.get("x_refresh_token_hard_expires_in").is_none());
    assert_eq!(sim.stats().token_refreshes, 2);
}

#[tokio::test]
async fn every_refresh_rotation_kills_the_old_token_at_once() {
    let sim = small()
        .rotation(Rotation::EveryRefresh)
        .spawn()
        .await
        .unwrap();
    let t0 = sim.refresh_token();
    let v = refresh(&sim, &t0).await.json();
    let t1 = v["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(t1, t0);
    assert_eq!(sim.refresh_token(), t1);
    let dead = refresh(&sim, &t0).await;
    assert_eq!(dead.status, 400);
    assert_eq!(dead.json()["error"], "invalid_grant");
    assert_eq!(
        dead.json()["error_description"],
        "Incorrect or invalid refresh token"
    );
    assert_eq!(refresh(&sim, &t1).await.status, 200);
    assert_eq!(sim.stats().token_rotations, 2);
    assert_eq!(sim.stats().token_failures, 1);
}

#[tokio::test]
async fn never_rotation_returns_the_same_token() {
    let sim = small().rotation(Rotation::Never).spawn().await.unwrap();
    let t0 = sim.refresh_token();
    for _ in 0..3 {
        let v = refresh(&sim, &t0).await.json();
        assert_eq!(v["refresh_token"], t0.as_str());
    }
}

#[tokio::test]
async fn periodic_rotation_and_grace_period() {
    let sim = small()
        .rotation(Rotation::Every(Duration::from_millis(300)))
        .old_refresh_token_grace(Some(Duration::from_millis(300)))
        .spawn()
        .await
        .unwrap();
    let t0 = sim.refresh_token();
    assert_eq!(
        refresh(&sim, &t0).await.json()["refresh_token"],
        t0.as_str()
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let t1 = refresh(&sim, &t0).await.json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(t1, t0);
    // Old token still accepted during the grace period (the newest comes back).
    let v = refresh(&sim, &t0).await.json();
    assert_eq!(v["refresh_token"], t1.as_str());
    tokio::time::sleep(Duration::from_millis(350)).await;
    let dead = refresh(&sim, &t0).await;
    assert_eq!(dead.status, 400);
    assert_eq!(dead.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn invalid_client_status_is_a_quirk() {
    for status in [400u16, 401] {
        let sim = small()
            .quirks(Quirks {
                invalid_client_status: status,
                ..Quirks::default()
            })
            .spawn()
            .await
            .unwrap();
        let a = refresh_with(&sim, &sim.client_id(), "wrong", &sim.refresh_token(), false).await;
        assert_eq!(a.status, status);
        assert_eq!(a.json()["error"], "invalid_client");
        let a = refresh_with(
            &sim,
            "someone-else",
            &sim.client_secret(),
            &sim.refresh_token(),
            false,
        )
        .await;
        assert_eq!(a.status, status);
    }
}

#[tokio::test]
async fn invalid_grant_without_description_and_revocation() {
    let sim = small()
        .quirks(Quirks {
            invalid_grant_description: false,
            ..Quirks::default()
        })
        .spawn()
        .await
        .unwrap();
    let a = refresh(&sim, "AB11nonsense").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body, r#"{"error":"invalid_grant"}"#);
    sim.revoke_refresh_tokens();
    let a = refresh(&sim, &sim.refresh_token()).await;
    assert_eq!(a.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn access_tokens_expire() {
    let sim = small()
        .access_token_ttl(Duration::from_millis(400))
        .spawn()
        .await
        .unwrap();
    let v = refresh(&sim, &sim.refresh_token()).await.json();
    let access = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(query_status(&sim, &access).await, 200);
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(query_status(&sim, &access).await, 401);
    let v2 = refresh(&sim, v["refresh_token"].as_str().unwrap())
        .await
        .json();
    assert_eq!(
        query_status(&sim, v2["access_token"].as_str().unwrap()).await,
        200
    );
}

#[tokio::test]
async fn wrong_grant_type_and_missing_token() {
    let sim = small().spawn().await.unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        sim.client_id(),
        sim.client_secret()
    ));
    let r = reqwest::Client::new()
        .post(sim.token_url())
        .header("Authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "client_credentials"), ("scope", "x")])
        .send()
        .await
        .unwrap();
    let a = answer(r).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"], "unsupported_grant_type");
    let r = reqwest::Client::new()
        .post(sim.token_url())
        .header("Authorization", format!("Basic {basic}"))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(answer(r).await.json()["error"], "invalid_request");
}

#[tokio::test]
async fn token_endpoint_faults_by_script() {
    let sim = small()
        .rotation(Rotation::EveryRefresh)
        .spawn()
        .await
        .unwrap();
    sim.script_token(vec![
        ScriptedFault::Status(503),
        ScriptedFault::FaultWith200,
        ScriptedFault::MalformedJson,
        ScriptedFault::Pass,
    ]);
    let t0 = sim.refresh_token();
    let a = refresh(&sim, &t0).await;
    assert_eq!(a.status, 503);
    let a = refresh(&sim, &t0).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["error"], "invalid_grant");
    // A truncated grant: the rotation happened server-side, the client cannot read it.
    let a = refresh(&sim, &t0).await;
    assert_eq!(a.status, 200);
    assert!(serde_json::from_str::<serde_json::Value>(&a.body).is_err());
    assert_ne!(sim.refresh_token(), t0);
    assert_eq!(refresh(&sim, &t0).await.status, 400);
}

/// A refresh with the client credentials as form fields and no Basic header
/// (`client_secret_post`, as Airbyte's and Singer's connectors send it).
async fn refresh_posted(sim: &SimHandle, id: &str, secret: &str, token: &str) -> Answer {
    let req = reqwest::Client::new()
        .post(sim.token_url())
        .header("Accept", "application/json")
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", id),
            ("client_secret", secret),
        ]);
    answer(req.send().await.unwrap()).await
}

#[tokio::test]
async fn client_credentials_in_the_form_body_are_accepted() {
    let sim = small().spawn().await.unwrap();
    let a = refresh_posted(
        &sim,
        &sim.client_id(),
        &sim.client_secret(),
        &sim.refresh_token(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(sim.refresh_token(), v["refresh_token"].as_str().unwrap());
    assert_eq!(
        query_status(&sim, v["access_token"].as_str().unwrap()).await,
        200
    );
    // Wrong secret, or no credentials at all: invalid_client, and the token is not used up.
    let token = sim.refresh_token();
    let bad = refresh_posted(&sim, &sim.client_id(), "wrong", &token).await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"], "invalid_client");
    let none = answer(
        reqwest::Client::new()
            .post(sim.token_url())
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"], "invalid_client");
    assert_eq!(sim.refresh_token(), token);
    // A Basic header decides alone: right form fields do not rescue a wrong header.
    let basic = base64::engine::general_purpose::STANDARD.encode("someone:else");
    let mixed = answer(
        reqwest::Client::new()
            .post(sim.token_url())
            .header("Authorization", format!("Basic {basic}"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token.as_str()),
                ("client_id", sim.client_id().as_str()),
                ("client_secret", sim.client_secret().as_str()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mixed.status, 401);
    assert_eq!(sim.stats().token_refreshes, 1);
}

#[tokio::test]
async fn discovery_document_names_this_token_endpoint() {
    let sim = small().spawn().await.unwrap();
    for path in [
        "/.well-known/openid_configuration",
        "/.well-known/openid_sandbox_configuration",
    ] {
        let a = answer(
            reqwest::get(format!("{}{path}", sim.base_url()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
        let doc = a.json();
        assert_eq!(doc["token_endpoint"], sim.token_url(), "{path}");
        // The consent page and revoke it names are the ones this simulator serves.
        assert_eq!(doc["authorization_endpoint"], sim.authorize_url(), "{path}");
        assert_eq!(doc["revocation_endpoint"], sim.revoke_url(), "{path}");
        assert!(
            doc["token_endpoint_auth_methods_supported"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == "client_secret_post")),
            "{}",
            a.body
        );
        for key in [
            "issuer",
            "authorization_endpoint",
            "revocation_endpoint",
            "userinfo_endpoint",
            "jwks_uri",
        ] {
            assert!(doc[key].is_string(), "{path} lacks {key}");
        }
    }
    // What the document names is what refreshes.
    let doc = answer(
        reqwest::get(format!(
            "{}/.well-known/openid_configuration",
            sim.base_url()
        ))
        .await
        .unwrap(),
    )
    .await
    .json();
    let a = answer(
        reqwest::Client::new()
            .post(doc["token_endpoint"].as_str().unwrap())
            .header("Accept", "application/json")
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", sim.refresh_token().as_str()),
                ("client_id", sim.client_id().as_str()),
                ("client_secret", sim.client_secret().as_str()),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["access_token"].is_string());
}
