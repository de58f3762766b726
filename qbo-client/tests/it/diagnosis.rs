//! QBO's real fault bodies end to end (issue 12, "error messages that send the operator the
//! wrong way"): each reaches the caller with its true cause, the fix, whether a re-run helps,
//! and the `intuit_tid` whatever the header's spelling. Also: a BOM before a token response,
//! and the give-up horizon of a persistent throttle.

use std::sync::Arc;
use std::time::Duration;

use qbo_client::{
    Credentials, Environment, MemoryTokenStore, QboClient, QboConfig, QboError, Query, RateLimit,
    Remedy, RetryPolicy,
};
use qbo_sim::ScriptedFault;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::*;

/// One canned HTTP answer.
#[derive(Clone)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

const GRANT: &str = r#"{"access_token":"at-1","refresh_token":"rt-1","token_type":"bearer","expires_in":3600,"x_refresh_token_expires_in":8726400}"#;

fn canned(
    status: u16,
    content_type: &'static str,
    tid: (&'static str, &'static str),
    body: &str,
) -> Canned {
    Canned {
        status,
        headers: vec![("Content-Type", content_type), tid],
        body: body.as_bytes().to_vec(),
    }
}

/// A server answering the token endpoint with `token` and every other request with `api`.
async fn server(token: Canned, api: Canned) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let (token, api) = (token.clone(), api.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let len: usize = head
                    .lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.trim().parse().unwrap());
                while buf.len() < head_end + 4 + len {
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let reply = if head.contains("/oauth2/") {
                    token
                } else {
                    api
                };
                let mut out = format!(
                    "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                    reply.status,
                    reply.body.len()
                );
                for (k, v) in &reply.headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&reply.body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

fn client_at(url: &str) -> QboClient {
    let cfg = QboConfig::new(
        Environment::Production,
        "9130347596348566",
        Credentials::new("client-id", "client-secret-value", "refresh-token-value"),
    )
    .with_base_url(url)
    .unwrap()
    .with_token_url(&format!("{url}/oauth2/v1/tokens/bearer"))
    .unwrap();
    QboClient::builder(cfg)
        .token_store(Arc::new(MemoryTokenStore::new()))
        .rate_limit(RateLimit::unlimited())
        .retry_policy(fast_retry().with_max_attempts(3))
        .build()
        .unwrap()
}

fn query() -> Query {
    Query::select("Invoice").max_results(10).build().unwrap()
}

fn ok_token() -> Canned {
    canned(200, "application/json", ("intuit_tid", "tok-1"), GRANT)
}

const XML_120: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2024-03-04T08:00:01.123-08:00"><Fault type="AuthorizationFault"><Error code="120"><Message>Authorization Failure</Message><Detail>AuthorizationFailure: Your subscription does not include access to this feature, statusCode: 401</Detail></Error></Fault></IntuitResponse>"#;
const XML_100: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2023-02-12T21:41:20.509-08:00"><Fault type="AuthenticationFault"><Error code="100"><Message>General Authentication Error</Message><Detail>AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401</Detail></Error></Fault></IntuitResponse>"#;
const JSON_403_3100: &str = r#"{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403","detail":null,"code":"3100","element":null}],"type":"SERVICE"},"report":null,"queryResponse":null,"batchItemResponse":[],"attachableResponse":[],"syncErrorResponse":null,"requestId":null,"time":1640612353707,"status":null,"cdcresponse":[]}"#;
const JSON_500_3100: &str = r#"{"Fault":{"Error":[{"Message":"message=InternalServerError; errorCode=003100; statusCode=500","Detail":"Internal Server Error","code":"3100"}],"type":"SystemFault"},"time":"2024-05-01T10:00:00.000-07:00"}"#;
const JSON_400: &str = r#"{"Fault":{"Error":[{"Message":"Error parsing query","Detail":"QueryParserError: Encountered \" <INTEGER> \"1 \"\" at line 1, column 34.","code":"4000"}],"type":"ValidationFault"}}"#;

#[tokio::test]
async fn real_fault_bodies_reach_the_caller_with_their_true_cause() {
    let cases: Vec<(Canned, Remedy, bool, &str)> = vec![
        (
            canned(401, "application/xml", ("Intuit_Tid", "tid-120"), XML_120),
            Remedy::CompanyAccount,
            true,
            "subscription",
        ),
        (
            canned(401, "application/xml", ("INTUIT_TID", "tid-100"), XML_100),
            Remedy::FixConfiguration,
            true,
            "QBO_REALM_ID",
        ),
        (
            canned(
                403,
                "application/json",
                ("intuit-tid", "tid-3100"),
                JSON_403_3100,
            ),
            Remedy::FixConfiguration,
            true,
            "QBO_ENV",
        ),
        (
            canned(
                500,
                "application/json",
                ("Intuit_TID", "tid-500"),
                JSON_500_3100,
            ),
            Remedy::RetryLater,
            false,
            "its side",
        ),
        (
            canned(400, "application/json", ("intuit_tid", "tid-400"), JSON_400),
            Remedy::RequestRejected,
            false,
            "same request",
        ),
    ];
    for (api, remedy, auth, words) in cases {
        let tid = api.headers[1].1;
        let url = server(ok_token(), api).await;
        let err = client_at(&url).query_page(&query()).await.unwrap_err();
        let d = err.diagnosis();
        assert_eq!(d.remedy, remedy, "{tid}: {err}");
        assert_eq!(err.is_auth(), auth, "{tid}: {err}");
        assert_eq!(d.rerun_helps(), remedy == Remedy::RetryLater);
        assert_eq!(err.intuit_tid(), Some(tid), "{err:?}");
        let text = chain(&err);
        assert!(text.contains(words), "{tid}: {text}");
        assert!(text.contains(tid), "{text}");
        assert!(!text.contains("the access token was refused"), "{text}");
        assert!(!text.contains("QBO_REFRESH_TOKEN"), "{tid}: {text}");
    }
}

#[tokio::test]
async fn invalid_client_names_the_app_keys_not_the_refresh_token() {
    let token = canned(
        401,
        "application/json",
        ("Intuit_Tid", "tid-ic"),
        r#"{"error":"invalid_client"}"#,
    );
    let url = server(token, canned(200, "application/json", ("a", "b"), "{}")).await;
    let err = client_at(&url).query_page(&query()).await.unwrap_err();
    let d = err.diagnosis();
    assert_eq!(d.remedy, Remedy::FixConfiguration);
    assert!(d.action.contains("QBO_CLIENT_SECRET"), "{d}");
    assert_eq!(err.intuit_tid(), Some("tid-ic"));
}

/// Item 14: the token path strips a UTF-8 BOM like the API path does.
#[tokio::test]
async fn a_bom_before_the_token_response_is_not_fatal() {
    let mut token = ok_token();
    token.body = [b"\xEF\xBB\xBF".as_slice(), GRANT.as_bytes()].concat();
    let page = canned(
        200,
        "application/json",
        ("intuit_tid", "tid-p"),
        r#"{"QueryResponse":{},"time":"2015-07-29T09:29:56.229-07:00"}"#,
    );
    let url = server(token, page).await;
    let page = client_at(&url).query_page(&query()).await.unwrap();
    assert!(page.records.is_empty());
    assert_eq!(page.intuit_tid.as_deref(), Some("tid-p"));
}

/// A persistent throttle gives up at the horizon (virtual time), and while nothing succeeds
/// each later request gives up at its first failure; one success ends the outage.
#[tokio::test(start_paused = true)]
async fn a_persistent_throttle_gives_up_at_the_horizon() {
    let sim = sim_builder().seed(64).invoices(5).spawn().await.unwrap();
    let policy = RetryPolicy::default()
        .with_jitter(false)
        .with_max_attempts(100)
        .with_give_up_after(Duration::from_secs(30));
    let client = builder(&sim, Arc::new(MemoryTokenStore::new()))
        .retry_policy(policy)
        .build()
        .unwrap();
    client.query_page(&query()).await.unwrap();
    sim.script(vec![ScriptedFault::Throttle; 50]);
    let started = tokio::time::Instant::now();
    let err = client.query_page(&query()).await.unwrap_err();
    let waited = started.elapsed();
    // Waits 2 + 4 + 8 + 16 = 30 s; the next (32 s) would pass the horizon.
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(31),
        "{waited:?}"
    );
    assert!(
        matches!(err, QboError::GaveUp { attempts: 5, .. }),
        "{err:?}"
    );
    assert_eq!(err.diagnosis().remedy, Remedy::RetryLater);
    assert!(chain(&err).contains("30s"), "{err}");

    sim.reset_stats();
    let started = tokio::time::Instant::now();
    let err = client.query_page(&query()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(
        matches!(err, QboError::GaveUp { attempts: 1, .. }),
        "{err:?}"
    );
    assert_eq!(query_requests(&sim), 1);

    // One success ends the outage: a throttle is waited out again.
    sim.script(Vec::new());
    client.query_page(&query()).await.unwrap();
    sim.script(vec![ScriptedFault::Throttle]);
    client.query_page(&query()).await.unwrap();
}
