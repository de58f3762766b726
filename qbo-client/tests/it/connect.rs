//! Connecting a company against qbo-sim: consent URL, callback, code exchange, revoke.

use std::sync::Arc;

use qbo_client::{
    AuthError, Credentials, Environment, ExposeSecret, MemoryTokenStore, OAuthApp, QboClient,
    QboConfig, QboError, Query, RateLimit, SecretString, TokenStore, Url,
};
use qbo_sim::{Consent, Quirks, SimHandle};

use crate::common::{chain, fast_retry, sim_builder};

const CB: &str = "http://127.0.0.1:8765/callback";

fn app(sim: &SimHandle) -> OAuthApp {
    OAuthApp::new(
        Environment::Sandbox,
        sim.client_id(),
        SecretString::from(sim.client_secret()),
    )
    .unwrap()
    .with_authorize_url(Url::parse(&sim.authorize_url()).unwrap())
    .unwrap()
    .with_token_url(Url::parse(&sim.token_url()).unwrap())
    .unwrap()
    .with_revoke_url(Url::parse(&sim.revoke_url()).unwrap())
    .unwrap()
}

/// What a browser does with the consent URL: the redirect's URL.
async fn browse(url: &Url) -> String {
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 302);
    r.headers()
        .get("location")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

fn client_for(sim: &SimHandle, realm: &str, store: Arc<dyn TokenStore>) -> QboClient {
    // The configured refresh token is a dummy: the store's connected one wins.
    let cfg = QboConfig::new(
        Environment::Sandbox,
        realm,
        Credentials::new(sim.client_id(), sim.client_secret(), "AB11unused"),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap();
    QboClient::builder(cfg)
        .token_store(store)
        .rate_limit(RateLimit::unlimited())
        .retry_policy(fast_retry())
        .build()
        .unwrap()
}

#[tokio::test]
async fn connect_then_query_then_revoke() {
    let sim = sim_builder()
        .extra_realm("4620816365000000002", 3)
        .consent(Consent::ApproveRealm("4620816365000000002".into()))
        .spawn()
        .await
        .unwrap();
    let app = app(&sim);
    let auth = app.authorization(CB);
    let redirected = browse(auth.url()).await;
    let cb = auth.callback(&redirected).unwrap();
    assert_eq!(cb.realm_id, "4620816365000000002");
    let tokens = app
        .exchange_code(&cb.code, auth.redirect_uri())
        .await
        .unwrap();
    assert_eq!(tokens.refresh_expires_in, Some(8_726_400));
    let name = app
        .company_name(
            &Url::parse(&sim.base_url()).unwrap(),
            &cb.realm_id,
            &tokens.access_token,
        )
        .await
        .unwrap();
    assert!(name.is_some_and(|n| !n.is_empty()));
    assert_eq!(tokens.hard_expires_in, Some(5 * 365 * 86_400));
    let dbg = format!("{tokens:?}");
    assert!(!dbg.contains(tokens.refresh_token.expose_secret()), "{dbg}");
    assert!(!dbg.contains(tokens.access_token.expose_secret()), "{dbg}");
    // The code works once.
    let again = app
        .exchange_code(&cb.code, auth.redirect_uri())
        .await
        .unwrap_err();
    assert!(
        matches!(again, QboError::Auth(AuthError::CodeRejected { .. })),
        "{again:?}"
    );
    assert!(!chain(&again).contains(cb.code.expose_secret()));

    let store = Arc::new(MemoryTokenStore::with_token(
        &cb.realm_id,
        tokens.refresh_token.expose_secret(),
    ));
    let client = client_for(&sim, &cb.realm_id, store.clone());
    let n = client
        .count(&Query::select("Customer").build().unwrap())
        .await
        .unwrap();
    assert!(n > 0);

    app.revoke(&store.load(&cb.realm_id).await.unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(sim.stats().revocations, 1);
    let fresh = client_for(&sim, &cb.realm_id, store);
    let err = fresh
        .count(&Query::select("Customer").build().unwrap())
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err:?}");
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn denial_wrong_redirect_and_bad_credentials() {
    let sim = sim_builder()
        .consent(Consent::Deny)
        .quirks(Quirks {
            hard_expiry_lifetime_spelling: true,
            ..Quirks::default()
        })
        .spawn()
        .await
        .unwrap();
    let app = app(&sim);
    let auth = app.authorization(CB);
    let denied = auth.callback(&browse(auth.url()).await).unwrap_err();
    assert!(
        matches!(&denied, AuthError::ConsentDenied { error, .. } if error == "access_denied"),
        "{denied:?}"
    );
    sim.set_consent(Consent::Approve);
    let auth = app.authorization(CB);
    let cb = auth.callback(&browse(auth.url()).await).unwrap();
    let wrong = app
        .exchange_code(&cb.code, "http://127.0.0.1:9/elsewhere")
        .await
        .unwrap_err();
    assert!(matches!(
        wrong,
        QboError::Auth(AuthError::CodeRejected { .. })
    ));
    // The other spelling of the hard expiry is read too.
    let auth = app.authorization(CB);
    let cb = auth.callback(&browse(auth.url()).await).unwrap();
    let t = app.exchange_code(&cb.code, CB).await.unwrap();
    assert_eq!(t.hard_expires_in, Some(5 * 365 * 86_400));
    // Wrong secret: invalid_client, for the exchange and for revoke; the secret never shows.
    let bad = OAuthApp::new(
        Environment::Sandbox,
        sim.client_id(),
        SecretString::from("not-the-secret-XYZ".to_owned()),
    )
    .unwrap()
    .with_token_url(Url::parse(&sim.token_url()).unwrap())
    .unwrap()
    .with_revoke_url(Url::parse(&sim.revoke_url()).unwrap())
    .unwrap();
    let e = bad.exchange_code(&cb.code, CB).await.unwrap_err();
    assert!(
        matches!(e, QboError::Auth(AuthError::InvalidClient { .. })),
        "{e:?}"
    );
    let e = bad.revoke(&t.refresh_token).await.unwrap_err();
    assert!(
        matches!(e, QboError::Auth(AuthError::InvalidClient { .. })),
        "{e:?}"
    );
    assert!(!chain(&e).contains("not-the-secret-XYZ"));
    assert!(!format!("{bad:?}").contains("not-the-secret-XYZ"));
    sim.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_token_anywhere_is_said_without_calling_intuit() {
    let sim = sim_builder().spawn().await.unwrap();
    let cfg = QboConfig::new(
        Environment::Sandbox,
        sim.realm_id(),
        Credentials::new(sim.client_id(), sim.client_secret(), ""),
    )
    .with_base_url(&sim.base_url())
    .unwrap()
    .with_token_url(&sim.token_url())
    .unwrap();
    let client = QboClient::builder(cfg)
        .token_store(Arc::new(MemoryTokenStore::new()))
        .build()
        .unwrap();
    let err = client
        .count(&Query::select("Customer").build().unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(err, QboError::Auth(AuthError::NoRefreshToken { .. })),
        "{err:?}"
    );
    assert!(chain(&err).contains("auth connect"));
    assert_eq!(sim.stats().endpoint_total("token"), 0);
    sim.shutdown().await.unwrap();
}
